"""Face embedders: aligned 150x150 face chips in, dlib's 128-d face descriptors out.

``DlibEmbedder`` is the reference (dlib's own ``face_recognition_model_v1``);
``OnnxEmbedder`` computes the same descriptors with the same weights through ONNX Runtime,
several times faster (see ``sauron.detect.resnet``).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import dlib
import numpy as np

from sauron.detect.resnet import CHIP_SIZE, DESCRIPTOR_DIM, FaceResnetOnnx, default_dat_path

log = logging.getLogger(__name__)

#: dlib's default context around the face in a chip, the one the ResNet was trained with
CHIP_PADDING = 0.25


def _check_chips(chips: np.ndarray) -> np.ndarray:
    chips = np.asarray(chips)
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(
            f"expected (N,{CHIP_SIZE},{CHIP_SIZE},3) uint8 RGB chips, "
            f"but got {chips.dtype} {chips.shape}"
        )
    return np.ascontiguousarray(chips)


class Embedder(ABC):
    """Turns aligned face chips into 128-d descriptors (Euclidean distance < 0.6: same person)."""

    name: ClassVar[str]
    dim: ClassVar[int] = DESCRIPTOR_DIM

    @abstractmethod
    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """chips: (N,150,150,3) uint8 RGB aligned face chips -> (N,128) float32"""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DlibEmbedder(Embedder):
    """dlib's ``face_recognition_model_v1`` itself: the reference."""

    name = "dlib"

    def __init__(self, model_path: str | None = None) -> None:
        path = model_path or str(default_dat_path())
        self._model: Any = dlib.face_recognition_model_v1(path)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = _check_chips(chips)
        if chips.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        descriptors = self._model.compute_face_descriptor(list(chips))
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float32)


class OnnxEmbedder(Embedder):
    """dlib's face ResNet converted to ONNX and run in ONNX Runtime on the CPU.

    The first use converts the model and caches it under
    ``${SAURON_CACHE:-~/.cache/sauron}/models``; later ones load the cached file.
    """

    name = "onnx"

    def __init__(self, threads: int = 1, model_path: str | None = None) -> None:
        self.threads = threads
        self._engine = FaceResnetOnnx(threads=threads, dat_path=model_path)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        return self._engine(_check_chips(chips))

    def __repr__(self) -> str:
        return f"OnnxEmbedder(threads={self.threads})"


def extract_chips(rgb: np.ndarray, shapes: Sequence[dlib.full_object_detection]) -> np.ndarray:
    """Aligned 150x150 chips of the faces whose landmarks are ``shapes``, stacked (N,150,150,3).

    ``shapes`` are ``dlib.full_object_detection`` s on ``rgb`` (an HxWx3 uint8 RGB image);
    this is ``dlib.get_face_chips(rgb, shapes, size=150, padding=0.25)``, the same chips
    ``compute_face_descriptor(rgb, shape)`` embeds.
    """
    if len(shapes) == 0:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    detections = dlib.full_object_detections()
    for shape in shapes:
        detections.append(shape)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    chips = dlib.get_face_chips(rgb, detections, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])


EMBEDDERS: dict[str, type[Embedder]] = {
    DlibEmbedder.name: DlibEmbedder,
    OnnxEmbedder.name: OnnxEmbedder,
}


def create_embedder(name: str, **kw: Any) -> Embedder:
    """Instantiate the embedder registered under ``name`` with keyword arguments ``kw``."""
    try:
        cls = EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; choose from {sorted(EMBEDDERS)}") from None
    return cls(**kw)


def default_embedder_name() -> str:
    """``"onnx"`` when ONNX Runtime can be imported, else ``"dlib"``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        log.info("onnxruntime is not importable; falling back to dlib's embedder")
        return DlibEmbedder.name
    return OnnxEmbedder.name
