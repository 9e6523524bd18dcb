"""JPEG encoding and decoding: the only place pixels are turned into bytes and back.

:func:`image_size` reads an untrusted file's dimensions from its header alone, so a caller
can refuse one too large for the memory it would take before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sauron import SauronError


class ImageDecodeError(SauronError):
    """Bytes that should hold an image could not be decoded."""


#: the formats of photos people upload (Pillow reads more, with more attack surface)
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def image_size(data: bytes, formats: tuple[str, ...] = PHOTO_FORMATS) -> tuple[int, int]:
    """(width, height) from the header of an image file, without decoding its pixels."""
    if not data:
        raise ImageDecodeError("empty image payload")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats)) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        raise ImageDecodeError(
            f"the image is over {2 * (Image.MAX_IMAGE_PIXELS or 0) // 1_000_000} "
            "megapixels (decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"not a usable image (a photo must be one of {', '.join(formats)})"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image ({exc})") from None
    if width < 1 or height < 1:
        raise ImageDecodeError(f"corrupt image: its header says {width}x{height} pixels")
    return width, height


def encode_jpeg(bgr: np.ndarray, quality: int = 80) -> bytes:
    """Encode an HxWx3 uint8 BGR image as JPEG bytes."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, but got {bgr.dtype} {bgr.shape}")
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode JPEG (or any OpenCV-readable) bytes to an HxWx3 uint8 BGR image."""
    if not data:
        raise ImageDecodeError("empty image payload")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageDecodeError(f"could not decode {len(data)} bytes as an image")
    return img


def bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    """A C-contiguous RGB copy, as dlib wants it."""
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def resize_max_width(bgr: np.ndarray, max_width: int | None) -> np.ndarray:
    """Shrink (never enlarge) an image so it is at most ``max_width`` pixels wide."""
    if not max_width or bgr.shape[1] <= max_width:
        return bgr
    scale = max_width / bgr.shape[1]
    size = (max_width, max(1, round(bgr.shape[0] * scale)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
