"""The detect stage: decode a frame once, find faces, embed them (or reuse a track's)."""

from __future__ import annotations

import time
from dataclasses import replace

import cv2

from sauron.config import DetectConfig
from sauron.detect.models import Detector, FaceModel, create_detector
from sauron.detect.tracking import FaceTracker, thumbnails
from sauron.imaging import bgr_to_rgb, decode_jpeg
from sauron.types import Detections, Frame


class DetectStage:
    """Frame in, Detections out, with the milliseconds each step took.

    With ``tracking`` on (it needs each camera's frames in order, i.e. camera
    partitioning) faces are embedded only when their track needs it.
    """

    def __init__(self, cfg: DetectConfig, detector: Detector | None = None, *,
                 tracking: bool | None = None) -> None:
        self.cfg = cfg
        self.detector = detector or create_detector(cfg)
        self.tracking = cfg.tracking if tracking is None else tracking
        self._trackers: dict[str, FaceTracker] = {}
        self.faces_embedded = 0
        self.faces_seen = 0

    def process(self, frame: Frame) -> tuple[Detections, dict[str, float]]:
        t0 = time.perf_counter()
        rgb = bgr_to_rgb(decode_jpeg(frame.jpeg))
        t1 = time.perf_counter()
        if not isinstance(self.detector, FaceModel):
            det = self.detector.detect(rgb)
            return det, {"decode": (t1 - t0) * 1e3, "detect": (time.perf_counter() - t1) * 1e3}
        model = self.detector
        det, shapes = model.locate(rgb)
        t2 = time.perf_counter()
        self.faces_seen += len(det)
        if not self.tracking:
            det = replace(det, embeddings=model.embed(rgb, shapes))
            self.faces_embedded += len(det)
        elif len(det):
            tracker = self._trackers.setdefault(frame.camera, FaceTracker(
                refresh_every=self.cfg.track_refresh))
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            ids, need = tracker.assign(frame.number, det.xyxy, thumbnails(gray, det.landmarks))
            idx = need.nonzero()[0]
            if len(idx):
                fresh = model.embed(rgb, [shapes[i] for i in idx])
                tracker.store(frame.number, ids[idx], det.xyxy[idx], fresh)
                self.faces_embedded += len(idx)
            det = replace(det, embeddings=tracker.embeddings(ids, model.embedder.dim),
                          track_ids=ids)
        t3 = time.perf_counter()
        return det, {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3,
                     "embed": (t3 - t2) * 1e3}
