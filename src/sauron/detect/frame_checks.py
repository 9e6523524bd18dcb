"""Checks of a frame before any pixel of it is decoded: what the workers refuse.

A frame that is empty, not a JPEG, truncated, too large in bytes or in pixels, or from a
camera id that is not a valid name is refused with a :class:`FrameRejected`, whose message
is the reason the dead-letter topic records (docs/reliability.md, "Bad input").
"""

from __future__ import annotations

import math

from sauron import SauronError
from sauron.bus.client import MAX_MESSAGE_BYTES
from sauron.config import check_name
from sauron.types import Frame

# The annotated message carries the frame twice (original and drawn): leave room for both.
MAX_JPEG_BYTES = MAX_MESSAGE_BYTES // 3
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}


class FrameRejected(SauronError):
    """A frame is refused before decoding; the message is the dead-letter reason."""


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) read from a JPEG's frame header, without decoding any pixel."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise FrameRejected(f"not a JPEG: starts with {data[:4].hex() or 'nothing'}")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise FrameRejected(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        seg = int.from_bytes(data[i + 2 : i + 4], "big")
        if seg < 2:
            raise FrameRejected(f"corrupt JPEG: segment length {seg} at byte {i}")
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + seg
    raise FrameRejected("corrupt JPEG: no frame header before the image data")


def check_frame(frame: Frame, max_pixels: int) -> None:
    """Refuse, with the reason, a frame that must not reach the image decoder."""
    try:
        check_name(frame.camera, "camera id")
    except ValueError as exc:
        raise FrameRejected(str(exc)[:200]) from None
    if not math.isfinite(frame.captured_at):
        raise FrameRejected(f"capture time {frame.captured_at} is not a finite number")
    size = len(frame.jpeg)
    if size == 0:
        raise FrameRejected("zero-sized frame: the JPEG is empty")
    if size > MAX_JPEG_BYTES:
        raise FrameRejected(f"frame of {size} bytes is over the limit of {MAX_JPEG_BYTES}")
    width, height = jpeg_dimensions(frame.jpeg)
    if width == 0 or height == 0:
        raise FrameRejected(f"zero-sized frame: the JPEG header says {width}x{height}")
    if width * height > max_pixels:
        raise FrameRejected(
            f"frame of {width}x{height} pixels is over the limit of {max_pixels} pixels"
        )
    if not frame.jpeg.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise FrameRejected(f"truncated JPEG: {size} bytes without an end-of-image marker")
