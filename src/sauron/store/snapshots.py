"""Face snapshots for the store, annotated frames, and the privacy blur shared with the
live streams."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from sauron.imaging import decode_jpeg, encode_jpeg
from sauron.match.stage import draw
from sauron.types import Box, Result


def blur_boxes(bgr: np.ndarray, boxes: Sequence[Box], *, margin: float = 0.15) -> np.ndarray:
    """A copy of the image with each box (grown by ``margin``) pixelated beyond recognition."""
    out = bgr.copy()
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in boxes:
        mx, my = int((x1 - x0) * margin), int((y1 - y0) * margin)
        x0, y0 = max(0, x0 - mx), max(0, y0 - my)
        x1, y1 = min(w, x1 + mx), min(h, y1 + my)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = out[y0:y1, x0:x1]
        small = cv2.resize(
            region, (max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 12)), interpolation=cv2.INTER_AREA
        )
        out[y0:y1, x0:x1] = cv2.GaussianBlur(
            cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST), (0, 0), 3
        )
    return out


def face_snapshot(
    bgr: np.ndarray, box: Box, *, size: int = 160, blur: bool = False, quality: int = 85
) -> bytes:
    """JPEG of the face with some context around it, at most ``size`` pixels a side."""
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    cx0, cy0 = max(0, x0 - bw // 3), max(0, y0 - bh // 3)
    cx1, cy1 = min(w, x1 + bw // 3), min(h, y1 + bh // 3)
    if cx1 <= cx0 or cy1 <= cy0:
        cx0, cy0, cx1, cy1 = 0, 0, w, h
    crop = bgr[cy0:cy1, cx0:cx1]
    if blur:
        crop = blur_boxes(crop, [(x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0)])
    scale = size / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(
            crop,
            (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return encode_jpeg(np.ascontiguousarray(crop), quality)


def annotated_image(result: Result, *, privacy_blur: bool = False) -> np.ndarray:
    """The frame as a viewer sees it (BGR): boxes and names drawn (the matcher's drawing
    when it made one: ``match.draw``), faces not on the watchlist blurred if asked. Raises
    :class:`sauron.imaging.ImageDecodeError` for a frame that is not a JPEG."""
    if result.annotated_jpeg and not privacy_blur:
        return decode_jpeg(result.annotated_jpeg)
    det = result.detections
    bgr = decode_jpeg(result.frame.jpeg)
    if privacy_blur:
        unknown: list[Box] = [
            (int(b[0]), int(b[1]), int(b[2]), int(b[3]))
            for b, name in zip(det.xyxy.tolist(), det.names, strict=True)
            if name is None
        ]
        bgr = blur_boxes(bgr, unknown)
    return draw(bgr, det)


def annotated_frame(result: Result, *, privacy_blur: bool = False, quality: int = 80) -> bytes:
    """:func:`annotated_image` as a JPEG (the matcher's own when it made one)."""
    if result.annotated_jpeg and not privacy_blur:
        return result.annotated_jpeg
    return encode_jpeg(annotated_image(result, privacy_blur=privacy_blur), quality)
