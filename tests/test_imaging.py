"""JPEG encoding and decoding, colour conversion and shrinking."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sauron import SauronError
from sauron.imaging import (
    ImageDecodeError,
    bgr_to_rgb,
    decode_jpeg,
    encode_jpeg,
    resize_max_width,
)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def smooth_image(h: int = 120, w: int = 160) -> np.ndarray:
    """A smooth BGR test card: gradients plus a few solid shapes (JPEG-friendly)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack(
        [x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], axis=2
    ).astype(np.uint8)
    cv2.rectangle(img, (20, 20), (60, 70), (0, 0, 255), -1)
    cv2.circle(img, (110, 60), 25, (255, 255, 255), -1)
    return img


def test_jpeg_round_trip_keeps_size_and_looks_the_same() -> None:
    img = smooth_image()
    data = encode_jpeg(img, quality=90)
    assert data[:2] == b"\xff\xd8"  # JPEG start-of-image marker
    back = decode_jpeg(data)
    assert back.shape == img.shape
    assert back.dtype == np.uint8
    assert psnr(img, back) > 30


def test_quality_trades_size_for_fidelity() -> None:
    img = smooth_image()
    rng = np.random.default_rng(0)
    img = np.clip(img.astype(np.int16) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    low, high = encode_jpeg(img, quality=20), encode_jpeg(img, quality=95)
    assert len(low) < len(high)
    assert psnr(img, decode_jpeg(low)) < psnr(img, decode_jpeg(high))


def test_colour_channels_stay_in_place() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 2] = 255  # pure red in BGR
    back = decode_jpeg(encode_jpeg(img, quality=95))
    b, g, r = (float(back[..., i].mean()) for i in range(3))
    assert r > 240
    assert b < 15
    assert g < 15


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
    ],
)
def test_encode_refuses_non_bgr_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expected an HxWx3 uint8 image, but got"):
        encode_jpeg(bad)


def test_decode_empty_payload() -> None:
    with pytest.raises(ImageDecodeError, match="empty image payload"):
        decode_jpeg(b"")


@pytest.mark.parametrize(
    "garbage", [b"not an image at all", b"\xff\xd8\xff" + b"\x00" * 50, bytes(range(256)) * 4]
)
def test_decode_garbage(garbage: bytes) -> None:
    with pytest.raises(ImageDecodeError, match=f"could not decode {len(garbage)} bytes"):
        decode_jpeg(garbage)


def test_decode_jpeg_cut_inside_its_header() -> None:
    data = encode_jpeg(smooth_image(), quality=90)
    # Cut inside the header: there is no image to recover.
    with pytest.raises(ImageDecodeError):
        decode_jpeg(data[:100])


def test_decode_reads_png_too() -> None:
    img = smooth_image(20, 30)
    ok, png = cv2.imencode(".png", img)
    assert ok
    np.testing.assert_array_equal(decode_jpeg(png.tobytes()), img)


def test_image_decode_error_is_a_sauron_error() -> None:
    assert issubclass(ImageDecodeError, SauronError)


def test_bgr_to_rgb_swaps_channels_into_a_contiguous_copy() -> None:
    bgr = smooth_image(10, 12)[:, ::2]  # a non-contiguous view
    rgb = bgr_to_rgb(bgr)
    assert rgb.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(rgb, bgr[..., ::-1])


@pytest.mark.parametrize(
    ("shape", "max_width", "expected"),
    [
        ((480, 1280, 3), 640, (240, 640, 3)),
        ((100, 301, 3), 100, (33, 100, 3)),
        ((1000, 10, 3), 5, (500, 5, 3)),
        ((3, 1000, 3), 10, (1, 10, 3)),  # never rounds a dimension down to zero
    ],
)
def test_resize_shrinks_to_max_width_keeping_aspect(
    shape: tuple[int, int, int], max_width: int, expected: tuple[int, int, int]
) -> None:
    img = np.full(shape, 77, np.uint8)
    out = resize_max_width(img, max_width)
    assert out.shape == expected
    assert out.dtype == np.uint8
    assert (out == 77).all()


@pytest.mark.parametrize("max_width", [640, 641, 4000, None, 0])
def test_resize_never_enlarges(max_width: int | None) -> None:
    img = smooth_image(480, 640)
    out = resize_max_width(img, max_width)
    assert out is img
