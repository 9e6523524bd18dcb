"""How good a view of a face is: its size and its pose (from the five landmarks), which the
detector already gives, and, where the frame's pixels are at hand, its sharpness. Used to
weigh a track's votes by its best faces and to pick the one face of a track that stands
for a visitor.
"""

from __future__ import annotations

import cv2
import numpy as np

from sauron.types import Detections

#: A face this wide (pixels) or wider counts as full size.
FULL_WIDTH = 112.0

#: Sharpness is measured on the middle of the face's box (this share of its width and
#: height cut off each side: the eyes, nose and mouth, not the background at its edges),
#: in grey, resized to SHARP_SIDE x SHARP_SIDE pixels, so that it does not depend on the
#: face's size (its size counts apart, :data:`FULL_WIDTH`).
SHARP_INSET = 0.15
SHARP_SIDE = 32

#: The variance of the Laplacian of that crop, once brought to mean 0 and standard
#: deviation 1 (so brightness and contrast do not count), at or above which a face counts
#: as fully sharp. Measured on the sample photos' faces (72-310 px wide): 0.94-1.66 as
#: they are, 0.38-1.24 blurred with a Gaussian of sigma 1 px, 0.11-0.75 with sigma 2; on
#: the realistic benchmark's faces (40-150 px, one camera) 0.87-1.22 (5th to 95th
#: percentile). Above it every face is as good: more would reward sensor noise, which
#: raises the variance too.
FULL_SHARPNESS = 0.8


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


def sharpness(image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: how sharp each box's face is in ``image`` (BGR or grey), 1 from
    :data:`FULL_SHARPNESS` up; 0 for a box with no pixels in the image, or of one flat
    colour."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    h, w = grey.shape[:2]
    out = np.zeros(len(xyxy), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(xyxy, np.float64).tolist()):
        dx, dy = (x1 - x0) * SHARP_INSET, (y1 - y0) * SHARP_INSET
        a, b = max(round(x0 + dx), 0), min(round(x1 - dx), w)
        c, d = max(round(y0 + dy), 0), min(round(y1 - dy), h)
        if b - a < 2 or d - c < 2:
            continue
        small = cv2.resize(grey[c:d, a:b], (SHARP_SIDE, SHARP_SIDE), interpolation=cv2.INTER_AREA)
        crop = small.astype(np.float32)
        crop -= crop.mean()
        spread = float(crop.std())
        if spread < 1.0:  # one flat colour, give or take a grey level
            continue
        lap = cv2.Laplacian(crop / spread, cv2.CV_32F, ksize=1)
        out[i] = min(float(lap.var()) / FULL_SHARPNESS, 1.0)
    return out


def face_quality(det: Detections, image: np.ndarray | None = None) -> np.ndarray:
    """(N,) in [0, 1]: size (up to :data:`FULL_WIDTH`) times frontalness, times
    :func:`sharpness` when the frame's pixels (``image``, BGR) are given.

    Compare qualities only of the same kind: with pixels a face scores at most what it
    scores without them."""
    if not len(det):
        return np.zeros(0, np.float32)
    width = (det.xyxy[:, 2] - det.xyxy[:, 0]).astype(np.float64)
    size = np.clip(width / FULL_WIDTH, 0, 1)
    quality = size * frontalness(det.landmarks)
    if image is not None:
        quality = quality * sharpness(image, det.xyxy)
    return quality.astype(np.float32)
