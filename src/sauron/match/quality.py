"""How good a view of a face is, from what the detector already gives: its size and its
pose (from the five landmarks). Used to weigh a track's votes by its best faces and to
pick the one face of a track that stands for a visitor.
"""

from __future__ import annotations

import numpy as np

from sauron.types import Detections

#: A face this wide (pixels) or wider counts as full size.
FULL_WIDTH = 112.0


def frontalness(landmarks: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: 1 for a face looking at the camera, towards 0 as it turns away.

    From dlib's five points (two corners of each eye, then the nose tip): how far the nose
    sits from the middle of the eyes, as a share of the distance between the eyes (a turned
    head brings the nose towards one eye), and how level the eyes are (a tilted head).
    """
    if len(landmarks) == 0:
        return np.zeros(0, np.float32)
    pts = landmarks.astype(np.float64)
    eye_a = (pts[:, 0] + pts[:, 1]) / 2
    eye_b = (pts[:, 2] + pts[:, 3]) / 2
    span = np.linalg.norm(eye_b - eye_a, axis=1)
    span = np.maximum(span, 1e-6)
    mid = (eye_a + eye_b) / 2
    axis = (eye_b - eye_a) / span[:, None]
    # the nose's offset along the eye line: 0 when frontal, ~0.5 in full profile
    yaw = np.abs(((pts[:, 4] - mid) * axis).sum(axis=1)) / span
    roll = np.abs(axis[:, 1])  # sine of the eye line's tilt
    score = (1 - np.clip(yaw / 0.5, 0, 1)) * (1 - np.clip(roll - 0.25, 0, 1))
    return score.astype(np.float32)


def face_quality(det: Detections) -> np.ndarray:
    """(N,) in [0, 1]: size (up to :data:`FULL_WIDTH`) times frontalness."""
    if not len(det):
        return np.zeros(0, np.float32)
    width = (det.xyxy[:, 2] - det.xyxy[:, 0]).astype(np.float64)
    size = np.clip(width / FULL_WIDTH, 0, 1)
    return (size * frontalness(det.landmarks)).astype(np.float32)
