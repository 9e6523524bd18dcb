"""The detect stage: decode a frame once, find faces, embed them (or reuse a track's)."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field, replace

import cv2
import dlib
import numpy as np

from sauron.config import DetectConfig, Settings
from sauron.detect.models import Detector, FaceModel, Shape, create_detector, to_rect
from sauron.detect.tracking import FaceTracker, iou_matrix, thumbnails
from sauron.imaging import bgr_to_rgb, decode_jpeg
from sauron.types import NUM_LANDMARKS, Detections, Frame

log = logging.getLogger(__name__)

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
#: While faces are followed and the picture changes away from them, a coarse scan for
#: newcomers runs at most every this many frames (a full scan comes every detect_every).
COARSE_EVERY = 2
#: Following: a tracked face is matched as a grey template TEMPLATE px wide within its
#: expected box widened by SEARCH face sizes on each side, and kept when the normalised
#: correlation reaches MATCH.
TEMPLATE = 24
SEARCH = 0.5
MATCH = 0.6


@dataclass
class _Camera:
    """Tracking state of one camera."""

    tracker: FaceTracker
    since_scan: int = 0
    # After its first scan a camera starts this many frames into its scan cycle, so the
    # cameras of a worker take turns at full scans instead of scanning the same instant
    # (cameras started together would otherwise all scan on every Nth round).
    phase: int = 0
    since_coarse: int = 0  # frames since the last coarse scan for newcomers
    # per track: its grey template (its box at TEMPLATE px wide) and landmarks of the last
    # frame, its previous box (for a constant-velocity guess) and its last detector score
    template: dict[int, np.ndarray] = field(default_factory=dict)
    marks: dict[int, np.ndarray] = field(default_factory=dict)
    prev: dict[int, np.ndarray] = field(default_factory=dict)
    score: dict[int, float] = field(default_factory=dict)
    small: np.ndarray | None = None  # the previous frame's grid of cell means

    def remember(
        self, gray: np.ndarray, ids: np.ndarray, det: Detections, detected: np.ndarray
    ) -> None:
        """Keep each track's box, landmarks and template (and, for faces the detector
        found, not followed, its score); forget tracks that ended."""
        live = set(self.tracker.tracks)
        for key in [k for k in self.prev if k not in live]:
            for memory in (self.template, self.marks, self.prev, self.score):
                memory.pop(key, None)
        for i, tid in enumerate(ids.tolist()):
            box = det.xyxy[i].astype(np.float64)
            if detected[i]:
                self.score[tid] = float(det.confidence[i])
            self.prev[tid] = box
            self.marks[tid] = det.landmarks[i].astype(np.float64)
            patch = _template(gray, box)
            if patch is None:
                self.template.pop(tid, None)
            else:
                self.template[tid] = patch


def _template(gray: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """The box's grey pixels scaled to TEMPLATE px wide (None when it is off the image)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    h, w = gray.shape
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    k = TEMPLATE / (x1 - x0)
    size = (TEMPLATE, max(4, round((y1 - y0) * k)))
    return cv2.resize(gray[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)


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
        if not self.tracking or frame.still:  # a still photo is its own scene: no tracks
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
        cam.remember(gray, ids, det, detected)
        idx = need.nonzero()[0]
        if len(idx):
            fitted = [
                shapes[i] if shapes[i] is not None else model.fit_landmarks(rgb, det.xyxy[i])
                for i in idx
            ]
            fresh = model.embed(rgb, fitted)
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
    ) -> tuple[Detections, list[Shape | None], np.ndarray, np.ndarray] | None:
        """Each track found again on its own: by matching its grey template around where
        it is expected (:func:`_match_template`; its landmarks move with it), else by
        running the detector in a region around it (:data:`REGION`). A track found neither
        way is not in this frame; newcomers are looked for by a coarse scan when the
        picture changed. (det, shapes (None where not fitted), thumbnails, found-by-the-
        detector mask), or None when nothing was found and the frame should be scanned."""
        boxes: list[np.ndarray] = []
        shapes: list[Shape | None] = []
        marks: list[np.ndarray] = []
        scores: list[float] = []
        detected: list[bool] = []
        thumbs: list[np.ndarray] = []
        regions: list[np.ndarray] = []
        for t in list(cam.tracker.tracks.values()):
            last = t.xyxy.astype(np.float64)
            guess = last + (last - cam.prev.get(t.id, last)) * (number - t.seen_at)
            template = cam.template.get(t.id)
            if t.seen_at == number - 1 and template is not None and t.id in cam.marks:
                box = _match_template(gray, template, guess)
                if box is not None and box[2] - box[0] >= max(self.cfg.min_face, 8):
                    pts = cam.marks[t.id] + (box[:2] - last[:2])
                    boxes.append(box)
                    shapes.append(None)  # fitted only if the face is embedded
                    marks.append(pts)
                    scores.append(cam.score.get(t.id, 0.0))
                    detected.append(False)
                    # the template matched: the same face, so its thumbnail stands
                    thumbs.append(
                        t.thumb
                        if t.thumb is not None
                        else thumbnails(gray, pts.astype(np.float32)[None])[0]
                    )
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
            thumbs.append(thumbnails(gray, found.landmarks[k : k + 1])[0])
        cam.since_coarse += 1
        if changed and cam.since_coarse >= COARSE_EVERY:  # someone may have come in: look
            cam.since_coarse = 0
            known = np.array(boxes, np.float64).reshape(-1, 4)
            found, found_shapes = model.locate(rgb, coarse=True, exclude=known)
            self.coarse_scans += 1
            for k in range(len(found)):
                boxes.append(found.xyxy[k].astype(np.float64))
                shapes.append(found_shapes[k])
                marks.append(found.landmarks[k].astype(np.float64))
                scores.append(float(found.confidence[k]))
                detected.append(True)
            thumbs.extend(thumbnails(gray, found.landmarks))
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
            np.array([thumbs[i] for i in keep], np.float32).reshape(len(keep), -1),
            np.array([detected[i] for i in keep], bool),
        )


def _match_template(gray: np.ndarray, template: np.ndarray, guess: np.ndarray) -> np.ndarray | None:
    """Where the face of ``template`` is near ``guess`` (same size box, xyxy), or None."""
    h, w = gray.shape
    fw, fh = guess[2] - guess[0], guess[3] - guess[1]
    if fw < 8 or fh < 8:
        return None
    x0, y0 = max(0, round(guess[0] - SEARCH * fw)), max(0, round(guess[1] - SEARCH * fh))
    x1, y1 = min(w, round(guess[2] + SEARCH * fw)), min(h, round(guess[3] + SEARCH * fh))
    k = TEMPLATE / fw
    ww, wh = round((x1 - x0) * k), round((y1 - y0) * k)
    th, tw = template.shape
    if ww < tw or wh < th:
        return None  # the face is leaving the picture
    window = cv2.resize(gray[y0:y1, x0:x1], (ww, wh), interpolation=cv2.INTER_AREA)
    fit = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(fit)
    if best < MATCH:
        return None
    left, top = x0 + bx / k, y0 + by / k
    return np.array([left, top, left + fw, top + fh])


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


def warm_worker_stage(settings: Settings) -> DetectStage:
    """:func:`worker_stage` with its models run once (the embedded bus's processes, so
    a standby that takes over pays no first-inference cost)."""
    stage = worker_stage(settings)
    log.info("detect: models loaded and warmed in %.2f s", warm_up(stage))
    return stage


def warm_up(stage: DetectStage) -> float:
    """Run the stage's models once on a dummy frame (loading is lazy in places and a
    first inference is slow); the seconds it took. The stage's tracking state is not
    touched."""
    t0 = time.perf_counter()
    rgb = np.full((360, 640, 3), 127, np.uint8)
    detector = stage.detector
    if isinstance(detector, FaceModel):
        detector.locate(rgb)
        # a made-up face: eye corners and nose tip in dlib's 5-point order
        pts = [(350, 160), (330, 160), (290, 160), (310, 160), (320, 200)]
        shape = dlib.full_object_detection(
            to_rect((270, 110, 370, 230)), [dlib.point(x, y) for x, y in pts]
        )
        detector.embed(rgb, [shape])
    else:
        detector.detect(rgb)
    return time.perf_counter() - t0
