"""Enrollment: untrusted photos checked and decoded, one face each, watchlist folders."""

from __future__ import annotations

import io
import logging
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sauron.detect.models import FaceModel
from sauron.imaging import bgr_to_rgb, resize_max_width
from sauron.match.enroll import (
    MAX_PHOTO_BYTES,
    MAX_PHOTO_PIXELS,
    MIN_FACE_PIXELS,
    EnrollError,
    enroll_into_dir,
    load_photo,
    load_watchlist_dir,
    person_from_photos,
    photo_embedding,
    remove_from_dir,
)

SAME_PERSON = 0.6
RED, BLUE = (255, 0, 0), (0, 0, 255)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with no pixel data to speak of."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def read_rgb(path: Path) -> np.ndarray:
    return bgr_to_rgb(cv2.imread(str(path)))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private embedding cache, so every test really computes its embeddings."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SAURON_CACHE", str(path))
    return path


# ----------------------------------------------------------------------------- load_photo


def test_rgb_jpeg() -> None:
    img = Image.new("RGB", (64, 48), (200, 100, 50))
    arr = load_photo(encode(img, "JPEG", quality=95))
    assert arr.shape == (48, 64, 3)
    assert arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(arr.reshape(-1, 3).mean(axis=0), (200, 100, 50), atol=3)


def test_cmyk_jpeg() -> None:
    img = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # full magenta + yellow = red
    arr = load_photo(encode(img, "JPEG", quality=95))
    assert arr.shape == (24, 32, 3)
    r, g, b = arr.reshape(-1, 3).mean(axis=0)
    assert r > 230
    assert g < 25
    assert b < 25


def test_grayscale_png() -> None:
    gray = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    arr = load_photo(encode(Image.fromarray(gray, "L"), "PNG"))
    assert arr.shape == (10, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], gray)


def test_sixteen_bit_grayscale_png_is_scaled_to_eight_bits() -> None:
    wide = np.tile(np.linspace(0, 40000, 50).astype(np.uint16), (6, 1))
    img = Image.fromarray(wide)
    assert img.mode.startswith("I;16")
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really 16 bits in the file
    arr = load_photo(data)
    assert arr.shape == (6, 50, 3)
    assert arr.dtype == np.uint8
    assert arr[0, -1, 0] >= 254  # the brightest pixel maps to (about) white
    assert arr[0, 0, 0] == 0
    np.testing.assert_allclose(arr[0, :, 0], wide[0] * 255.0 / 40000, atol=1.0)


def test_palette_png_with_transparency() -> None:
    img = Image.new("P", (20, 10), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (10, 0, 20, 10))
    arr = load_photo(encode(img, "PNG", transparency=0))
    assert arr.shape == (10, 20, 3)
    assert tuple(arr[5, 2]) == RED
    assert tuple(arr[5, 15]) == BLUE


def test_rgba_png_drops_alpha() -> None:
    img = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    arr = load_photo(encode(img, "PNG"))
    assert arr.shape == (8, 8, 3)
    assert tuple(arr[0, 0]) == (10, 20, 30)


def test_grey_alpha_and_bilevel() -> None:
    assert load_photo(encode(Image.new("LA", (5, 4), (77, 10)), "PNG")).shape == (4, 5, 3)
    arr = load_photo(encode(Image.new("1", (6, 3), 1), "PNG"))
    assert arr.shape == (3, 6, 3)
    assert (arr == 255).all()


def test_exif_orientation_six_is_turned_upright() -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste(Image.new("RGB", (20, 20), BLUE), (20, 0))  # left red, right blue
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    arr = load_photo(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert arr.shape == (40, 20, 3)  # width and height swapped
    top, bottom = arr[5, 10].astype(int), arr[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # what was on the left is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 12), c) for c in (RED, BLUE, (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    arr = load_photo(data)
    assert arr.shape == (12, 16, 3)
    assert tuple(arr[6, 8]) == RED


def test_bmp_and_tiff() -> None:
    img = Image.new("RGB", (7, 5), (1, 2, 3))
    for fmt in ("BMP", "TIFF"):
        arr = load_photo(encode(img, fmt))
        assert arr.shape == (5, 7, 3)
        assert tuple(arr[0, 0]) == (1, 2, 3)


@pytest.mark.parametrize(
    "data", [b"", b"hello, I am not an image", bytes(range(256)), b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"]
)
def test_non_image_bytes(data: bytes) -> None:
    with pytest.raises(EnrollError, match=r"alice\.jpg: not a usable image"):
        load_photo(data, source="alice.jpg")


def test_truncated_image() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(img, "PNG")
    with pytest.raises(EnrollError, match="corrupt or truncated image"):
        load_photo(data[: len(data) // 2])


def test_oversized_file() -> None:
    with pytest.raises(
        EnrollError, match=f"is {MAX_PHOTO_BYTES + 1} bytes, the limit is {MAX_PHOTO_BYTES}"
    ):
        load_photo(b"\x00" * (MAX_PHOTO_BYTES + 1))


@pytest.mark.parametrize(
    "size",
    [
        (8_000, 7_000),  # over MAX_PHOTO_PIXELS, under Pillow's own warning
        (10_000, 10_000),  # over Pillow's warning threshold
        (30_000, 30_000),
    ],  # over Pillow's hard limit
)
def test_decompression_bomb_header(size: tuple[int, int]) -> None:
    data = png_header(*size)
    assert len(data) < 100
    with pytest.raises(EnrollError, match="decompression bomb"):
        load_photo(data, source="bomb.png")


def test_real_image_over_the_pixel_limit() -> None:
    # 1-bit pixels compress to almost nothing: a cheap image just over the limit
    width = 8_000
    height = MAX_PHOTO_PIXELS // width + 1
    data = encode(Image.new("1", (width, height), 0), "PNG")
    with pytest.raises(
        EnrollError,
        match=rf"{width}x{height} pixels is over the limit of "
        rf"{MAX_PHOTO_PIXELS} \(decompression bomb\?\)",
    ):
        load_photo(data)


# ----------------------------------------------------------------------------- photo_embedding


def test_one_face_gives_one_embedding(face_model: FaceModel, photos: dict[str, Path]) -> None:
    emb = photo_embedding(face_model, read_rgb(photos["obama.jpg"]))
    assert emb.shape == (128,)
    assert emb.dtype == np.float32
    other = photo_embedding(face_model, read_rgb(photos["obama2.jpg"]))
    assert float(np.linalg.norm(emb - other)) < SAME_PERSON


def test_no_face(face_model: FaceModel) -> None:
    with pytest.raises(EnrollError, match=r"blank\.png: no face found in the photo"):
        photo_embedding(face_model, np.full((200, 200, 3), 200, np.uint8), source="blank.png")


@pytest.fixture(scope="module")
def two_faces(photos: dict[str, Path]) -> np.ndarray:
    a, b = read_rgb(photos["obama.jpg"]), read_rgb(photos["biden.jpg"])
    h = min(len(a), len(b))
    return np.ascontiguousarray(np.concatenate([a[:h], b[:h]], axis=1))


def test_two_faces_are_refused(face_model: FaceModel, two_faces: np.ndarray) -> None:
    with pytest.raises(EnrollError, match="2 faces found; use a photo of one person"):
        photo_embedding(face_model, two_faces)


def test_two_faces_largest_takes_the_bigger_one(
    face_model: FaceModel, two_faces: np.ndarray, photos: dict[str, Path]
) -> None:
    det, _ = face_model.locate(two_faces)
    assert len(det) == 2
    bigger_is_right = det.areas[int(np.argmax(det.xyxy[:, 0]))] == det.areas.max()
    emb = photo_embedding(face_model, two_faces, largest=True)
    obama = photo_embedding(face_model, read_rgb(photos["obama.jpg"]))
    biden = photo_embedding(face_model, read_rgb(photos["biden.jpg"]))
    # biden.jpg (on the right) holds the bigger face
    assert bigger_is_right
    assert float(np.linalg.norm(emb - biden)) < 0.1
    assert float(np.linalg.norm(emb - obama)) > SAME_PERSON


@pytest.fixture(scope="module")
def small_face_model() -> FaceModel:
    """Upsampling twice finds faces down to about 20 px (shares the loaded models)."""
    return FaceModel(detector="dlib-hog", embedder="dlib", upsample=2)


def _shrunk(photos: dict[str, Path], width: int) -> np.ndarray:
    bgr = resize_max_width(cv2.imread(str(photos["obama.jpg"])), width)
    canvas = np.full((240, 240, 3), 128, np.uint8)
    canvas[: bgr.shape[0], : bgr.shape[1]] = bgr
    return bgr_to_rgb(canvas)


def test_face_too_small(small_face_model: FaceModel, photos: dict[str, Path]) -> None:
    rgb = _shrunk(photos, 120)
    det, _ = small_face_model.locate(rgb)
    assert len(det) == 1
    width = int(det.xyxy[0, 2] - det.xyxy[0, 0])
    assert width < MIN_FACE_PIXELS
    with pytest.raises(
        EnrollError,
        match=f"the face is {width} px wide, too small to be useful "
        rf"\(at least {MIN_FACE_PIXELS} px\)",
    ):
        photo_embedding(small_face_model, rgb)


def test_face_just_big_enough(small_face_model: FaceModel, photos: dict[str, Path]) -> None:
    rgb = _shrunk(photos, 180)
    det, _ = small_face_model.locate(rgb)
    assert int(det.xyxy[0, 2] - det.xyxy[0, 0]) >= MIN_FACE_PIXELS
    assert photo_embedding(small_face_model, rgb).shape == (128,)


# ----------------------------------------------------------------------------- folders


@pytest.fixture
def photo_files(tmp_path: Path, photos: dict[str, Path]) -> dict[str, Path]:
    """Copies of the sample photos plus made-up bad ones, in a scratch folder."""
    src = tmp_path / "incoming"
    src.mkdir()
    out = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        out[name] = src / name
        shutil.copyfile(photos[name], out[name])
    out["blank.png"] = src / "blank.png"
    Image.new("RGB", (120, 120), (90, 90, 90)).save(out["blank.png"])
    out["broken.jpg"] = src / "broken.jpg"
    out["broken.jpg"].write_bytes(b"this is not a jpeg")
    return out


def test_person_from_photos(
    face_model: FaceModel, photo_files: dict[str, Path], cache: Path
) -> None:
    person = person_from_photos(
        face_model, "obama", [photo_files["obama.jpg"], photo_files["obama2.jpg"]]
    )
    assert person.name == "obama"
    assert person.embeddings.shape == (2, 128)
    assert person.embeddings.dtype == np.float32
    assert float(np.linalg.norm(person.embeddings[0] - person.embeddings[1])) < SAME_PERSON
    # each embedding was cached, keyed by the photo's bytes
    cached = sorted((cache / "embeddings").glob("*.npy"))
    assert len(cached) == 2
    assert {tuple(np.load(p).tolist()) for p in cached} == {
        tuple(e.tolist()) for e in person.embeddings
    }
    again = person_from_photos(
        face_model, "obama", [photo_files["obama.jpg"], photo_files["obama2.jpg"]]
    )
    np.testing.assert_array_equal(again.embeddings, person.embeddings)


def test_person_from_photos_refusals(
    face_model: FaceModel, photo_files: dict[str, Path], cache: Path
) -> None:
    with pytest.raises(EnrollError, match="obama: no photos given"):
        person_from_photos(face_model, "obama", [])
    with pytest.raises(EnrollError, match=r"missing\.jpg: cannot read"):
        person_from_photos(face_model, "obama", [photo_files["obama.jpg"].with_name("missing.jpg")])
    with pytest.raises(EnrollError, match=r"blank\.png: no face found"):
        person_from_photos(
            face_model, "obama", [photo_files["obama.jpg"], photo_files["blank.png"]]
        )
    with pytest.raises(ValueError, match=r"person name '\.\./evil' must be"):
        person_from_photos(face_model, "../evil", [photo_files["obama.jpg"]])


def test_enroll_load_and_remove(
    face_model: FaceModel,
    photo_files: dict[str, Path],
    tmp_path: Path,
    cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "watchlist"
    obama = enroll_into_dir(
        face_model, root, "obama", [photo_files["obama.jpg"], photo_files["obama2.jpg"]]
    )
    biden = enroll_into_dir(face_model, root, "biden", [photo_files["biden.jpg"]])
    assert obama.embeddings.shape == (2, 128)
    assert biden.embeddings.shape == (1, 128)
    copied = sorted(p.name for p in (root / "obama").iterdir())
    assert len(copied) == 2
    assert all(len(n) == len("0123456789ab.jpg") and n.endswith(".jpg") for n in copied)
    # enrolling the same photo again does not duplicate it
    enroll_into_dir(face_model, root, "obama", [photo_files["obama.jpg"]])
    assert len(list((root / "obama").iterdir())) == 2

    # a bad photo and a text file in obama's folder; a folder with only a blank image
    shutil.copyfile(photo_files["broken.jpg"], root / "obama" / "broken.jpg")
    (root / "obama" / "notes.txt").write_text("not a photo")
    (root / "nobody").mkdir()
    shutil.copyfile(photo_files["blank.png"], root / "nobody" / "blank.png")
    (root / "stray.jpg").write_bytes(b"files at the top level are not people")

    with caplog.at_level(logging.WARNING, logger="sauron.match.enroll"):
        people = load_watchlist_dir(face_model, root)
    assert [p.name for p in people] == ["biden", "obama"]
    loaded = {p.name: p for p in people}
    np.testing.assert_allclose(
        np.sort(loaded["obama"].embeddings, axis=0), np.sort(obama.embeddings, axis=0), atol=1e-6
    )
    np.testing.assert_allclose(loaded["biden"].embeddings, biden.embeddings, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "skipping" in w and "broken.jpg" in w and "not a usable image" in w for w in warnings
    )
    assert any("skipping" in w and "blank.png" in w and "no face" in w for w in warnings)
    assert "watchlist: nobody has no usable photo, not enrolled" in warnings
    assert not any("notes.txt" in w for w in warnings)

    assert remove_from_dir(root, "obama") is True
    assert not (root / "obama").exists()
    assert remove_from_dir(root, "obama") is False
    assert [p.name for p in load_watchlist_dir(face_model, root)] == ["biden"]


def test_enroll_refuses_before_copying(
    face_model: FaceModel, photo_files: dict[str, Path], tmp_path: Path, cache: Path
) -> None:
    root = tmp_path / "watchlist"
    with pytest.raises(EnrollError, match="no face"):
        enroll_into_dir(face_model, root, "ghost", [photo_files["blank.png"]])
    assert not (root / "ghost").exists()


def test_missing_watchlist_folder(face_model: FaceModel, tmp_path: Path) -> None:
    with pytest.raises(EnrollError, match=r"watchlist folder .* does not exist"):
        load_watchlist_dir(face_model, tmp_path / "nope")


def test_remove_refuses_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    with pytest.raises(ValueError, match="person name"):
        remove_from_dir(tmp_path / "keep", "..")
    assert (tmp_path / "keep").is_dir()
