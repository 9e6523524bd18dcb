"""The detect stage: decode a frame once, find faces, embed them (or reuse a track's)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from sauron.config import DetectConfig, Settings
from sauron.detect.models import Detector, FaceModel, Shape, create_detector
from sauron.detect.tracking import FaceTracker, iou_matrix, thumbnails
from sauron.imaging import bgr_to_rgb, decode_jpeg
from sauron.types import NUM_LANDMARKS, Detections, Frame

#: Change detection between frames on a grid of CELL x CELL pixel means: a cell changed
#: when its mean moved by more than CHANGE_LEVEL grey levels; a new face changes far more
#: than CHANGED_CELLS cells (HOG finds faces of 80 px and up: 100 cells), a timestamp
#: overlay or sensor noise far fewer.
CELL = 8
CHANGE_LEVEL = 15.0
CHANGED_CELLS = 24
#: A tracked face that its landmarks cannot follow is looked for by the detector in its
#: expected box widened by this many face sizes on each side.
REGION = 1.0


def _eyes(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre between the eyes and the distance between them (dlib's 5 points)."""
    a, b = (pts[0] + pts[1]) / 2, (pts[2] + pts[3]) / 2
    return (a + b) / 2, max(float(np.linalg.norm(a - b)), 1.0)


@dataclass
class _Camera:
    """Tracking state of one camera."""

    tracker: FaceTracker
    since_scan: int = 0
    # After its first scan a camera starts this many frames into its scan cycle, so the
    # cameras of a worker take turns at full scans instead of scanning the same instant
    # (cameras started together would otherwise all scan on every Nth round).
    phase: int = 0
    # per track: its box relative to the eyes (in eye distances) at the last detection,
    # its previous box (for a constant-velocity guess) and its last detector score
    shape: dict[int, np.ndarray] = field(default_factory=dict)
    prev: dict[int, np.ndarray] = field(default_factory=dict)
    score: dict[int, float] = field(default_factory=dict)
    small: np.ndarray | None = None  # the previous frame's grid of cell means

    def remember(self, ids: np.ndarray, det: Detections, detected: np.ndarray) -> None:
        """Keep each track's box (and, for faces the detector found, not followed, its
        shape relative to the eyes and its score)."""
        live = set(self.tracker.tracks)
        for key in [k for k in self.shape if k not in live]:
            self.shape.pop(key, None)
            self.prev.pop(key, None)
            self.score.pop(key, None)
        for i, tid in enumerate(ids.tolist()):
            box = det.xyxy[i].astype(np.float64)
            if detected[i]:
                centre, dist = _eyes(det.landmarks[i].astype(np.float64))
                self.shape[tid] = (box - np.tile(centre, 2)) / dist
                self.score[tid] = float(det.confidence[i])
            self.prev[tid] = box


def _changed_elsewhere(cam: _Camera, gray: np.ndarray) -> bool:
    """Whether the frame changed, since the previous one, away from the tracked people.

    Each tracked face's column (the face widened by 60 % on each side, from a little above
    it down to the bottom of the frame, where its body is) is left out: someone walking
    changes pixels there. Elsewhere, on a static camera, a change means something new
    came into view, so the detector should scan this frame rather than wait.
    """
    h, w = gray.shape
    small = cv2.resize(
        gray, (max(1, w // CELL), max(1, h // CELL)), interpolation=cv2.INTER_AREA
    ).astype(np.float32)
    prev, cam.small = cam.small, small
    if prev is None or prev.shape != small.shape:
        return True
    moved = np.abs(small - prev) > CHANGE_LEVEL
    sy, sx = small.shape[0] / h, small.shape[1] / w
    for t in cam.tracker.tracks.values():
        x0, y0, x1, y1 = t.xyxy.astype(np.float64)
        fw, fh = x1 - x0, y1 - y0
        c0, c1 = int((x0 - 0.6 * fw) * sx), int(np.ceil((x1 + 0.6 * fw) * sx))
        moved[max(0, int((y0 - 0.8 * fh) * sy)) :, max(0, c0) : max(0, c1)] = False
    return int(moved.sum()) > CHANGED_CELLS


class DetectStage:
    """Frame in, Detections out, with the milliseconds each step took.

    With ``tracking`` on (it needs each camera's frames in order, i.e. camera
    partitioning) faces are embedded only when their track needs it (see
    :class:`~sauron.detect.tracking.FaceTracker`), and the detector scans the whole frame on
    every ``detect_every``-th frame of a camera. In between, each tracked face is followed
    on its own: its landmarks are fitted where it is expected (its last box moved by its
    last motion) and kept if its aligned thumbnail still looks like the track's; a face that
    fails is looked for by the detector in a region around it. When the picture changed
    away from the tracked faces, a coarse scan (CenterFace at half its scale) looks for
    larger faces that came into view; smaller ones are found by the next full scan, at
    most ``detect_every - 1`` frames late. With no face in view, a change in the picture
    calls for a full scan. ``detect_every=1`` scans every frame.
    """

    def __init__(
        self,
        cfg: DetectConfig,
        detector: Detector | None = None,
        *,
        tracking: bool | None = None,
        detect_every: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.detector = detector or create_detector(cfg)
        self.tracking = cfg.tracking if tracking is None else tracking
        self.detect_every = max(1, detect_every or cfg.detect_every)
        self._cameras: dict[str, _Camera] = {}
        # Track ids unique across stages, so a camera moved to another worker (rebalance)
        # never reuses the ids of its old tracks. Kept below 2**53 (exact in JSON/JS).
        self._id_base = secrets.randbits(20) << 32
        self.faces_embedded = 0
        self.faces_seen = 0
        self.frames_scanned = 0
        self.frames_followed = 0
        self.regions_scanned = 0
        self.coarse_scans = 0

    def process(self, frame: Frame) -> tuple[Detections, dict[str, float]]:
        t0 = time.perf_counter()
        rgb = bgr_to_rgb(decode_jpeg(frame.jpeg))
        t1 = time.perf_counter()
        if not isinstance(self.detector, FaceModel):
            det = self.detector.detect(rgb)
            return det, {"decode": (t1 - t0) * 1e3, "detect": (time.perf_counter() - t1) * 1e3}
        model = self.detector
        if not self.tracking:
            det, shapes = model.locate(rgb)
            self.frames_scanned += 1
            t2 = time.perf_counter()
            det = replace(det, embeddings=model.embed(rgb, shapes))
            self.faces_embedded += len(det)
        else:
            det, t2 = self._tracked(frame, rgb, model)
        self.faces_seen += len(det)
        t3 = time.perf_counter()
        return det, {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3, "embed": (t3 - t2) * 1e3}

    def _camera(self, name: str) -> _Camera:
        cam = self._cameras.get(name)
        if cam is None:
            cam = self._cameras[name] = _Camera(
                FaceTracker(refresh_every=self.cfg.track_refresh, first_id=self._id_base + 1),
                phase=len(self._cameras) % self.detect_every,
            )
        return cam

    def _tracked(self, frame: Frame, rgb: np.ndarray, model: FaceModel) -> tuple[Detections, float]:
        """Locate (scan or follow), assign tracks, embed what needs it; (det, t_located)."""
        cam = self._camera(frame.camera)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        changed = _changed_elsewhere(cam, gray)
        due = cam.since_scan + 1 >= self.detect_every
        live = [t for t in cam.tracker.tracks.values() if frame.number - t.seen_at <= 1]
        # Follow faces, not the scene: with faces to follow, only the schedule calls for a
        # full scan (a moving background changes every frame); with none, a change in the
        # picture does, since someone may have come into view.
        followed = None
        if not due and (live or not changed):
            if cam.tracker.tracks:
                followed = self._follow(cam, frame.number, rgb, gray, model, changed)
            else:  # nobody in view and nothing changed: nothing to look for
                empty = Detections.empty(model.embedder.dim)
                followed = empty, [], thumbnails(gray, empty.landmarks), np.zeros(0, bool)
        if followed is None:
            det, shapes = model.locate(rgb)
            thumbs = thumbnails(gray, det.landmarks)
            detected = np.ones(len(det), bool)
            cam.since_scan, cam.phase = cam.phase, 0
            self.frames_scanned += 1
        else:
            det, shapes, thumbs, detected = followed
            cam.since_scan += 1
            self.frames_followed += 1
        t2 = time.perf_counter()
        if not len(det):
            cam.tracker.assign(frame.number, det.xyxy, thumbs)
            return det, t2
        tracker = cam.tracker
        ids, need = tracker.assign(frame.number, det.xyxy, thumbs)
        cam.remember(ids, det, detected)
        idx = need.nonzero()[0]
        if len(idx):
            fresh = model.embed(rgb, [shapes[i] for i in idx])
            tracker.store(frame.number, ids[idx], det.xyxy[idx], fresh)
            self.faces_embedded += len(idx)
        det = replace(det, embeddings=tracker.embeddings(ids, model.embedder.dim), track_ids=ids)
        return det, t2

    def _follow(
        self,
        cam: _Camera,
        number: int,
        rgb: np.ndarray,
        gray: np.ndarray,
        model: FaceModel,
        changed: bool,
    ) -> tuple[Detections, list[Shape], np.ndarray, np.ndarray] | None:
        """Each track found again on its own: by fitting its landmarks where it is expected
        (kept if its aligned thumbnail still looks like the track's), else by running the
        detector in a region around it (:data:`REGION`). A track found neither way is not
        in this frame. (det, shapes, thumbnails, found-by-the-detector mask), or None when
        nothing was found and the frame should be scanned."""
        h, w = rgb.shape[:2]
        boxes: list[np.ndarray] = []
        shapes: list[Shape] = []
        marks: list[np.ndarray] = []
        scores: list[float] = []
        detected: list[bool] = []
        regions: list[np.ndarray] = []
        for t in list(cam.tracker.tracks.values()):
            last = t.xyxy.astype(np.float64)
            guess = last + (last - cam.prev.get(t.id, last)) * (number - t.seen_at)
            if t.seen_at == number - 1 and t.thumb is not None and t.id in cam.shape:
                shape = model.fit_landmarks(rgb, [round(v) for v in guess])
                pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
                centre, dist = _eyes(pts)
                box = np.clip(
                    np.round(np.tile(centre, 2) + cam.shape[t.id] * dist), 0, [w - 1, h - 1] * 2
                )
                big = box[2] - box[0] >= max(self.cfg.min_face, 8) and box[3] - box[1] >= 8
                if big:
                    thumb = thumbnails(gray, pts.astype(np.float32)[None])[0]
                    if float(t.thumb @ thumb) >= cam.tracker.min_similarity:
                        boxes.append(box)
                        shapes.append(shape)
                        marks.append(pts)
                        scores.append(cam.score.get(t.id, 0.0))
                        detected.append(False)
                        continue
            regions.append(guess)
        for guess in regions:
            fw, fh = guess[2] - guess[0], guess[3] - guess[1]
            area = np.round(guess + np.array([-fw, -fh, fw, fh]) * REGION).astype(int)
            found, found_shapes = model.locate(rgb, (area[0], area[1], area[2], area[3]))
            self.regions_scanned += 1
            if not len(found):
                continue
            overlap = iou_matrix(guess[None], found.xyxy)[0]
            k = int(np.argmax(overlap))
            if overlap[k] <= 0:
                continue
            boxes.append(found.xyxy[k].astype(np.float64))
            shapes.append(found_shapes[k])
            marks.append(found.landmarks[k].astype(np.float64))
            scores.append(float(found.confidence[k]))
            detected.append(True)
        if changed:  # someone may have come into view: a quick look for them
            found, found_shapes = model.locate(rgb, coarse=True)
            self.coarse_scans += 1
            for k in range(len(found)):
                boxes.append(found.xyxy[k].astype(np.float64))
                shapes.append(found_shapes[k])
                marks.append(found.landmarks[k].astype(np.float64))
                scores.append(float(found.confidence[k]))
                detected.append(True)
        if not boxes:
            return None
        keep = _distinct(np.array(boxes))  # two tracks that reached the same face: one
        landmarks = np.array([marks[i] for i in keep], np.float32).reshape(
            len(keep), NUM_LANDMARKS, 2
        )
        det = Detections(
            xyxy=np.array([boxes[i] for i in keep], np.int32).reshape(len(keep), 4),
            confidence=np.array([scores[i] for i in keep], np.float32),
            landmarks=landmarks,
            embeddings=np.full((len(keep), model.embedder.dim), np.nan, np.float32),
        )
        return (
            det,
            [shapes[i] for i in keep],
            thumbnails(gray, landmarks),
            np.array([detected[i] for i in keep], bool),
        )


def _distinct(boxes: np.ndarray, overlap: float = 0.5) -> list[int]:
    """Indices of the boxes left after dropping any that overlaps an earlier one."""
    keep: list[int] = []
    if len(boxes):
        iou = iou_matrix(boxes, boxes)
        for i in range(len(boxes)):
            if all(iou[i, j] < overlap for j in keep):
                keep.append(i)
    return keep


def tracking_enabled(settings: Settings) -> bool:
    """Tracking needs every frame of a camera in one worker: camera partitioning."""
    return settings.detect.tracking and settings.topics.partitioning == "camera"


def worker_stage(settings: Settings) -> DetectStage:
    """The detect stage as a worker process runs it (tracking where it can work)."""
    return DetectStage(settings.detect, tracking=tracking_enabled(settings))
