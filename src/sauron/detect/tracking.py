"""Face tracking within one camera, so a face is embedded a few times, not every frame.

Faces are linked frame to frame by box overlap (greedy IoU). A track is embedded when it
is first seen, once more ``confirm_after`` frames later (a second vote for the match
stage's identity voting), when its face has grown markedly since the last embedding
(closer to the camera, so a better view), and every ``refresh_every`` frames; in between
it carries the last embedding. A cheap appearance check guards against one person
stepping into another's place: a small grey thumbnail of each face is compared with the
track's thumbnail of the previous frame, and a sudden change (normalised correlation
below ``min_similarity``) re-embeds at once. Needs each camera's frames in order on one
worker (camera partitioning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Track:
    id: int
    xyxy: np.ndarray
    embedding: np.ndarray | None
    embedded_area: float
    embedded_at: int
    seen_at: int
    thumb: np.ndarray | None = None
    embeds: int = 0


THUMB = 24
# Where the eye centres and the nose tip land in a thumbnail (fractions of its side).
_TEMPLATE = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.66]], np.float32) * THUMB


def thumbnails(gray: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(N, THUMB*THUMB) zero-mean, unit-norm grey face thumbnails aligned on the landmarks.

    Aligning on dlib's 5 points (two corners per eye, then the nose) rather than cropping
    the box makes the signature steady while the detector's box jitters.
    """
    out = np.zeros((len(landmarks), THUMB * THUMB), np.float32)
    for i, pts in enumerate(landmarks):
        src = np.array([(pts[2] + pts[3]) / 2, (pts[0] + pts[1]) / 2, pts[4]], np.float32)
        matrix, _ = cv2.estimateAffinePartial2D(src, _TEMPLATE)
        if matrix is None:
            continue
        v = cv2.warpAffine(gray, matrix, (THUMB, THUMB), flags=cv2.INTER_AREA)
        v = v.astype(np.float32).reshape(-1)
        v -= v.mean()
        out[i] = v / max(float(np.linalg.norm(v)), 1e-6)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of two sets of xyxy boxes."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return np.asarray(inter / np.maximum(area_a + area_b - inter, 1e-9))


@dataclass
class FaceTracker:
    """Tracks of one camera (the thresholds are explained in the module's docstring)."""

    iou_threshold: float = 0.3
    max_gap: int = 5
    refresh_every: int = 15
    grow_ratio: float = 1.4
    min_similarity: float = 0.8
    confirm_after: int | None = 3
    first_id: int = 1
    tracks: dict[int, Track] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._next_id = self.first_id

    def assign(
        self, frame_no: int, xyxy: np.ndarray, thumbs: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track id of each box, and a mask of the boxes whose face must be embedded now."""
        self.tracks = {
            k: t for k, t in self.tracks.items() if 0 <= frame_no - t.seen_at <= self.max_gap
        }
        n = len(xyxy)
        ids = np.full(n, -1, np.int64)
        live = list(self.tracks.values())
        if live and n:
            iou = iou_matrix(np.stack([t.xyxy for t in live]), xyxy)
            for flat in np.argsort(-iou, axis=None):
                ti, di = divmod(int(flat), n)
                if iou[ti, di] < self.iou_threshold:
                    break
                if ids[di] == -1 and all(ids != live[ti].id):
                    ids[di] = live[ti].id
        need = np.zeros(n, bool)
        areas = (xyxy[:, 2] - xyxy[:, 0]).astype(np.float64) * (xyxy[:, 3] - xyxy[:, 1])
        for i in range(n):
            if ids[i] == -1:
                ids[i] = self._next_id
                self.tracks[self._next_id] = Track(self._next_id, xyxy[i], None, 0.0, -1, frame_no)
                self._next_id += 1
            t = self.tracks[int(ids[i])]
            t.xyxy, t.seen_at = xyxy[i], frame_no
            changed = False
            if thumbs is not None:
                changed = t.thumb is not None and float(t.thumb @ thumbs[i]) < self.min_similarity
                t.thumb = thumbs[i]
            need[i] = (
                t.embedding is None
                or changed
                or frame_no - t.embedded_at >= self.refresh_every
                or (
                    self.confirm_after is not None
                    and t.embeds == 1
                    and frame_no - t.embedded_at >= self.confirm_after
                )
                or areas[i] >= self.grow_ratio * t.embedded_area
            )
        return ids, need

    def store(
        self, frame_no: int, ids: np.ndarray, xyxy: np.ndarray, embeddings: np.ndarray
    ) -> None:
        """Remember fresh embeddings of the given tracks."""
        for tid, box, emb in zip(ids.tolist(), xyxy, embeddings, strict=True):
            t = self.tracks[tid]
            t.embedding = emb
            t.embeds += 1
            t.embedded_at = frame_no
            t.embedded_area = float((box[2] - box[0]) * (box[3] - box[1]))

    def embeddings(self, ids: np.ndarray, dim: int) -> np.ndarray:
        out = np.full((len(ids), dim), np.nan, np.float32)
        for i, tid in enumerate(ids.tolist()):
            emb = self.tracks[tid].embedding
            if emb is not None:
                out[i] = emb
        return out
