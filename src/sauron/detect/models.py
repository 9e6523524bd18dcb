"""Detector plugins: a small interface and a registry keyed by ``detect.detector.type``.

The detectors are listed once, in the configuration (:data:`sauron.config.DETECTORS`, each
with its own settings); every plugin registers under one of those names, and a test checks
that each has its plugin.

A plugin turns an RGB image into a :class:`~sauron.types.Detections`. Face plugins split
the work in two steps so a tracker can skip the expensive one: :meth:`FaceModel.locate`
(boxes and 5-point landmarks, a few milliseconds) and :meth:`FaceModel.embed` (128-d
embeddings of selected faces, the bulk of the cost).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
import dlib
import face_recognition_models
import numpy as np

from sauron import SauronError
from sauron.config import DETECTORS, DetectConfig, FaceDetectorSettings
from sauron.detect.centerface import CenterFace, to_dlib_boxes
from sauron.detect.embedders import Embedder, create_embedder, default_embedder_name, extract_chips
from sauron.detect.tracking import iou_matrix
from sauron.types import NUM_LANDMARKS, Box, Detections

log = logging.getLogger(__name__)

Shape = Any  # dlib.full_object_detection (dlib ships no type stubs)

#: face detectors a FaceModel can run (docs/models.md, "Detectors"): those of the
#: configuration whose settings are a face detector's
FACE_DETECTORS = tuple(
    name for name, settings in DETECTORS.items() if issubclass(settings, FaceDetectorSettings)
)


class ModelError(SauronError):
    """A model plugin could not be created or used."""


class Detector(ABC):
    """What every detector plugin offers."""

    type: str
    label: ClassVar[str]

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> Detections:
        """Everything this model finds in one C-contiguous RGB uint8 image."""


_REGISTRY: dict[str, Callable[[DetectConfig], Detector]] = {}


def to_rect(box: Sequence[float]) -> Any:
    """A :data:`~sauron.types.Box` (xyxy) as dlib's rectangle, for dlib's models only."""
    left, top, right, bottom = (int(v) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def from_rect(rect: Any) -> Box:
    """dlib's rectangle as a :data:`~sauron.types.Box` (xyxy)."""
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


def register(*names: str) -> Callable[[type[Detector]], type[Detector]]:
    """Register a plugin class under detector names of the configuration."""
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ModelError(f"no settings for detector(s) {unknown} in sauron.config.DETECTORS")

    def deco(cls: type[Detector]) -> type[Detector]:
        for name in names:
            _REGISTRY[name] = cls.from_config  # type: ignore[attr-defined]
        return cls

    return deco


def create_detector(cfg: DetectConfig) -> Detector:
    kind = cfg.detector.type
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ModelError(f"no plugin for detector {kind!r}; known: {sorted(_REGISTRY)}") from None
    return factory(cfg)


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


class Guarded:
    """A model object loaded once per process, with the lock every use of it must hold.

    dlib's detectors, shape predictor and face ResNet are not safe to call from two threads
    at once (two threads in one HOG detector crash the process), so each shared object is
    only ever used under its own lock. See docs/models.md, "Threads", for why a lock and not
    one copy per thread.
    """

    __slots__ = ("lock", "obj")

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.lock = threading.Lock()


_load_lock = threading.Lock()
_shared: dict[str, Guarded] = {}


def _shared_model(key: str, factory: Callable[[], Any], *, private: bool = False) -> Guarded:
    """Load each model file once per process (or, ``private``, a copy of one's own)."""
    if private:
        return Guarded(factory())
    with _load_lock:
        if key not in _shared:
            _shared[key] = Guarded(factory())
        return _shared[key]


@register(*FACE_DETECTORS)
class FaceModel(Detector):
    """Face detection (CenterFace or dlib) + dlib's 5-point landmarks + a pluggable 128-d
    embedder."""

    label = "face"

    def __init__(
        self,
        *,
        detector: str = "centerface",
        upsample: int = 0,
        input_scale: float = 0.5,
        model_path: str | Path | None = None,
        embedder: str = "auto",
        min_face: int = 0,
        private: bool = False,
    ) -> None:
        """``detector``: one of :data:`FACE_DETECTORS`. ``upsample``: dlib's upsampling for
        HOG and MMOD; CenterFace sees the image scaled by ``input_scale * 2**upsample``.
        ``model_path``: a CenterFace ``.onnx`` of one's own (default: the registry's).
        ``private``: load copies of the models for this instance alone instead of sharing
        the process's (more memory; see docs/models.md, "Threads")."""
        if detector not in FACE_DETECTORS:
            raise ModelError(f"unknown face detector {detector!r}; known: {FACE_DETECTORS}")
        self.upsample = upsample
        self.input_scale = input_scale
        self.model_path = model_path
        self.min_face = min_face
        self.private = private
        self.type = detector
        if detector == "centerface":
            self._finder = _shared_model(
                f"centerface:{model_path or ''}",
                lambda: CenterFace(model_path),
                private=private,
            )
        elif detector == "dlib-cnn":
            self._finder = _shared_model(
                "cnn",
                lambda: dlib.cnn_face_detection_model_v1(
                    face_recognition_models.cnn_face_detector_model_location()
                ),
                private=private,
            )
        else:
            self._finder = _shared_model("hog", dlib.get_frontal_face_detector, private=private)
        self._pose = _shared_model(
            "pose5",
            lambda: dlib.shape_predictor(
                face_recognition_models.pose_predictor_five_point_model_location()
            ),
            private=private,
        )
        name = default_embedder_name() if embedder == "auto" else embedder
        self._embedder_name = name
        self._embedder = _shared_model(
            f"embedder:{name}", lambda: create_embedder(name), private=private
        )
        #: the embedder (its name and dim); call it only through :meth:`embed`
        self.embedder: Embedder = self._embedder.obj
        log.debug("face model ready: %s detector, %s embedder", detector, self.embedder.name)

    @property
    def cnn(self) -> bool:
        """Whether the detector is a CNN (dlib's MMOD or CenterFace)."""
        return self.type != "dlib-hog"

    @classmethod
    def from_config(cls, cfg: DetectConfig) -> FaceModel:
        """The detector's own settings (``detect.detector``) are this class's arguments."""
        own = cfg.detector.model_dump(exclude={"type"})
        return cls(detector=cfg.detector.type, embedder=cfg.embedder, min_face=cfg.min_face, **own)

    def with_upsample(self, upsample: int) -> FaceModel:
        """The same kind of model scanning at another upsampling (shared models are not
        reloaded; a private model gets private copies)."""
        if upsample == self.upsample:
            return self
        return FaceModel(
            detector=self.type,
            upsample=upsample,
            input_scale=self.input_scale,
            model_path=self.model_path,
            embedder=self._embedder_name,
            min_face=self.min_face,
            private=self.private,
        )

    def _rects(self, rgb: np.ndarray, coarse: bool = False) -> tuple[list[Any], list[float]]:
        finder = self._finder
        if self.type == "centerface":
            scale = self.input_scale * 2**self.upsample * (0.5 if coarse else 1.0)
            with finder.lock:
                boxes, scores = finder.obj(rgb, scale=scale)
            rects = [to_rect(b) for b in to_dlib_boxes(boxes)]
            return rects, [float(s) for s in scores]
        if self.type == "dlib-cnn":
            with finder.lock:
                found = finder.obj(rgb, self.upsample)
            return [d.rect for d in found], [float(d.confidence) for d in found]
        with finder.lock:
            rects, scores, _ = finder.obj.run(rgb, self.upsample, 0.0)
        return list(rects), [float(s) for s in scores]

    def locate(
        self,
        rgb: np.ndarray,
        region: Box | None = None,
        *,
        coarse: bool = False,
        exclude: np.ndarray | None = None,
    ) -> tuple[Detections, list[Shape]]:
        """Face boxes (clipped to the image) and landmarks, without embeddings; with
        ``region`` (x0, y0, x1, y1), only the faces found inside that part of the image.
        ``coarse``: a quicker look for larger faces only (CenterFace at half its scale;
        the same as a normal look for dlib's detectors). ``exclude``: xyxy boxes of faces
        already known; found faces overlapping one of them are left out (and not fitted)."""
        h, w = rgb.shape[:2]
        if region is None:
            rects, scores = self._rects(rgb, coarse)
        else:
            x0, y0 = max(0, region[0]), max(0, region[1])
            x1, y1 = min(w, region[2]), min(h, region[3])
            if x1 - x0 < 8 or y1 - y0 < 8:
                return Detections.empty(self.embedder.dim), []
            part, scores = self._rects(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
            rects = [dlib.translate_rect(r, dlib.point(x0, y0)) for r in part]
        keep = [i for i, r in enumerate(rects) if r.width() >= self.min_face]
        if keep and exclude is not None and len(exclude):
            found = np.array([from_rect(r) for r in rects])
            near = iou_matrix(found, exclude).max(axis=1)
            keep = [i for i in keep if near[i] < 0.3]
        if not keep:
            return Detections.empty(self.embedder.dim), []
        with self._pose.lock:
            shapes = [self._pose.obj(rgb, rects[i]) for i in keep]
        xyxy = np.array(
            [
                [max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)]
                for x0, y0, x1, y1 in (from_rect(rects[i]) for i in keep)
            ],
            np.int32,
        )
        landmarks = np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], np.float32)
        det = Detections(
            xyxy=xyxy,
            confidence=np.array([scores[i] for i in keep], np.float32),
            landmarks=landmarks.reshape(len(keep), NUM_LANDMARKS, 2),
            embeddings=np.full((len(keep), self.embedder.dim), np.nan, np.float32),
        )
        return det, shapes

    def fit_landmarks(self, rgb: np.ndarray, xyxy: Sequence[int]) -> Shape:
        """dlib's 5 points fitted in a given box (following a tracked face)."""
        with self._pose.lock:
            return self._pose.obj(rgb, to_rect(xyxy))

    def embed(self, rgb: np.ndarray, shapes: Sequence[Shape]) -> np.ndarray:
        """(len(shapes), 128) float32 embeddings of the given faces."""
        if not shapes:
            return np.zeros((0, self.embedder.dim), np.float32)
        chips = extract_chips(rgb, list(shapes))
        with self._embedder.lock:
            out = self._embedder.obj.embed_chips(chips)
        return np.asarray(out, np.float32)

    def detect(self, rgb: np.ndarray) -> Detections:
        det, shapes = self.locate(rgb)
        if not shapes:
            return det
        return Detections(
            xyxy=det.xyxy,
            confidence=det.confidence,
            landmarks=det.landmarks,
            embeddings=self.embed(rgb, shapes),
        )


@register("opencv-people")
class PeopleModel(Detector):
    """OpenCV's built-in HOG pedestrian detector: person boxes, no identities."""

    label = "person"
    type = "opencv-people"

    def __init__(self, *, min_confidence: float = 0.3) -> None:
        self.min_confidence = min_confidence
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(
            cv2.HOGDescriptor_getDefaultPeopleDetector()  # type: ignore[attr-defined]
        )

    @classmethod
    def from_config(cls, cfg: DetectConfig) -> PeopleModel:
        return cls()

    def detect(self, rgb: np.ndarray) -> Detections:
        found, scores = self._hog.detectMultiScale(
            rgb, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        if len(found) == 0:
            return Detections.empty(0, label=self.label)
        weights = np.asarray(scores, np.float32).reshape(-1)
        rects = np.asarray(found, np.int32).reshape(-1, 4)
        keep = weights >= self.min_confidence
        rects, weights = rects[keep], weights[keep]
        xyxy = np.column_stack(
            [rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]]
        ).astype(np.int32)
        n = len(xyxy)
        return Detections(
            xyxy=xyxy.reshape(n, 4),
            confidence=weights,
            landmarks=np.zeros((n, NUM_LANDMARKS, 2), np.float32),
            embeddings=np.zeros((n, 0), np.float32),
            label=self.label,
        )
