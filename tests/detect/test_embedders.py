"""The ONNX embedder against dlib's own face-recognition model, on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import dlib
import face_recognition_models
import numpy as np
import pytest

from sauron.demo.samples import sample_photos
from sauron.detect import resnet
from sauron.detect.embedders import (
    EMBEDDERS,
    DlibEmbedder,
    Embedder,
    OnnxEmbedder,
    create_embedder,
    default_embedder_name,
    extract_chips,
)

#: bound on |onnx - dlib| per descriptor component; measured: about 3e-7 on an x86 CPU
#: (the bound leaves room for other CPUs' kernels, and is 100x tighter than the 1e-3 asked)
PARITY_TOL = 1e-5
SAME_PERSON = 0.6

Face = tuple[np.ndarray, list[dlib.full_object_detection]]


@pytest.fixture(scope="module")
def detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@pytest.fixture(scope="module")
def predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def _landmarks(
    rgb: np.ndarray, detector: dlib.fhog_object_detector, predictor: dlib.shape_predictor
) -> list[dlib.full_object_detection]:
    return [predictor(rgb, box) for box in detector(rgb, 1)]


@pytest.fixture(scope="module")
def faces(detector: dlib.fhog_object_detector, predictor: dlib.shape_predictor) -> dict[str, Face]:
    """{photo name: (RGB image, landmarks of every face dlib finds in it)}"""
    out: dict[str, Face] = {}
    for name, path in sample_photos().items():
        rgb = _read_rgb(path)
        out[name] = (rgb, _landmarks(rgb, detector, predictor))
    assert all(out[n][1] for n in ("obama.jpg", "obama2.jpg", "biden.jpg")), "faces not found"
    return out


@pytest.fixture(scope="module")
def chips(faces: dict[str, Face]) -> dict[str, np.ndarray]:
    return {name: extract_chips(rgb, shapes) for name, (rgb, shapes) in faces.items()}


@pytest.fixture(scope="module")
def all_chips(chips: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(chips.values()))


@pytest.fixture(scope="module")
def dlib_model() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())


@pytest.fixture(scope="module")
def reference() -> DlibEmbedder:
    return DlibEmbedder()


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxEmbedder:
    return OnnxEmbedder()


def _transformed_crops(
    rgb: np.ndarray, shapes: list[dlib.full_object_detection]
) -> list[np.ndarray]:
    """Crops around each face, resized, noisy and JPEG-recompressed."""
    rng = np.random.default_rng(1234)
    out: list[np.ndarray] = []
    for shape in shapes:
        box = shape.rect
        w, h = box.width(), box.height()
        top, left = max(0, box.top() - h), max(0, box.left() - w)
        crop = rgb[top : box.bottom() + h, left : box.right() + w]
        small = cv2.resize(crop, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
        large = cv2.resize(crop, None, fx=1.3, fy=1.3, interpolation=cv2.INTER_LINEAR)
        noisy = np.clip(crop + rng.normal(0, 12, crop.shape), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 25])
        assert ok
        decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        assert decoded is not None
        out += [small, large, noisy, decoded[..., ::-1]]
    return [np.ascontiguousarray(im) for im in out]


# ------------------------------------------------------------------------------------------


def test_whole_image_descriptor_equals_chip_descriptor(
    faces: dict[str, Face], chips: dict[str, np.ndarray], dlib_model: dlib.face_recognition_model_v1
) -> None:
    """dlib's (image, landmarks) path embeds exactly the chip extract_chips returns, so the
    chip path is the reference."""
    compared = 0
    for name, (rgb, shapes) in faces.items():
        assert chips[name].shape == (len(shapes), 150, 150, 3)
        for shape, chip in zip(shapes, chips[name], strict=True):
            whole = np.asarray(dlib_model.compute_face_descriptor(rgb, shape))
            from_chip = np.asarray(dlib_model.compute_face_descriptor(chip))
            np.testing.assert_array_equal(whole, from_chip)
            compared += 1
    assert compared >= 5


def test_onnx_matches_dlib_on_photos(
    all_chips: np.ndarray, reference: DlibEmbedder, onnx_embedder: OnnxEmbedder
) -> None:
    want = reference.embed_chips(all_chips)
    got = onnx_embedder.embed_chips(all_chips)
    assert got.shape == want.shape == (len(all_chips), 128)
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= PARITY_TOL


def test_onnx_matches_dlib_on_transformed_faces(
    faces: dict[str, Face],
    detector: dlib.fhog_object_detector,
    predictor: dlib.shape_predictor,
    reference: DlibEmbedder,
    onnx_embedder: OnnxEmbedder,
) -> None:
    transformed = []
    for rgb, shapes in faces.values():
        for image in _transformed_crops(rgb, shapes):
            found = _landmarks(image, detector, predictor)
            if found:
                transformed.append(extract_chips(image, found))
    batch = np.concatenate(transformed)
    assert len(batch) >= 12, "too few transformed faces were found again"
    # plus synthetic chips far from any face the network has seen
    rng = np.random.default_rng(7)
    batch = np.concatenate(
        [
            batch,
            rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8),
            np.zeros((1, 150, 150, 3), np.uint8),
            np.full((1, 150, 150, 3), 255, np.uint8),
        ]
    )
    diff = np.abs(onnx_embedder.embed_chips(batch) - reference.embed_chips(batch))
    assert diff.max() <= PARITY_TOL


def test_same_and_different_people(
    chips: dict[str, np.ndarray], onnx_embedder: OnnxEmbedder
) -> None:
    obama, obama2, biden = (
        onnx_embedder.embed_chips(chips[n][:1])[0] for n in ("obama.jpg", "obama2.jpg", "biden.jpg")
    )
    assert np.linalg.norm(obama - obama2) < SAME_PERSON
    assert np.linalg.norm(obama - biden) > SAME_PERSON


def test_batch_equals_singles(all_chips: np.ndarray, onnx_embedder: OnnxEmbedder) -> None:
    batch = onnx_embedder.embed_chips(all_chips)
    singles = np.concatenate([onnx_embedder.embed_chips(c[None]) for c in all_chips])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-6)


def test_two_threads_match(all_chips: np.ndarray, onnx_embedder: OnnxEmbedder) -> None:
    two = OnnxEmbedder(threads=2)
    np.testing.assert_allclose(
        two.embed_chips(all_chips), onnx_embedder.embed_chips(all_chips), rtol=0, atol=1e-6
    )


def test_empty_batch_and_bad_input(onnx_embedder: OnnxEmbedder, reference: DlibEmbedder) -> None:
    for embedder in (onnx_embedder, reference):
        assert embedder.embed_chips(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
        with pytest.raises(ValueError):
            embedder.embed_chips(np.zeros((1, 160, 160, 3), np.uint8))
        with pytest.raises(ValueError):
            embedder.embed_chips(np.zeros((1, 150, 150, 3), np.float32))
    assert extract_chips(np.zeros((20, 20, 3), np.uint8), []).shape == (0, 150, 150, 3)


def test_registry() -> None:
    assert set(EMBEDDERS) == {"dlib", "onnx"}
    assert default_embedder_name() == "onnx"
    embedder = create_embedder("onnx", threads=1)
    assert isinstance(embedder, OnnxEmbedder) and isinstance(embedder, Embedder)
    assert embedder.dim == 128
    with pytest.raises(ValueError, match="unknown embedder"):
        create_embedder("nope")


def test_conversion_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAURON_CACHE", str(tmp_path))
    first = resnet.cached_onnx_path()
    assert first.parent == tmp_path / "models"
    assert first.suffix == ".onnx"
    stamp = first.stat().st_mtime_ns
    assert resnet.cached_onnx_path() == first
    assert first.stat().st_mtime_ns == stamp
    # no temp files left; the lock that guarded the conversion stays beside it
    left = sorted(p.name for p in first.parent.iterdir())
    assert left == [first.name, f"{first.name}.lock"]


# ------------------------------------------------------------------------------------------
# the .dat reader


def test_parse_face_resnet() -> None:
    net = resnet.load_face_resnet(resnet.default_dat_path())
    assert net.loss == "loss_metric_2"
    assert net.loss_params["distance_threshold"] == pytest.approx(0.6)
    assert (net.input.rows, net.input.cols) == (150, 150)
    assert net.input.avg == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    convs = [layer for layer in net.layers if isinstance(layer, resnet.Conv)]
    assert len(convs) == 29
    assert convs[0].weights.shape == (32, 3, 7, 7)
    assert convs[-1].weights.shape == (256, 256, 3, 3)
    fc = net.layers[-1]
    assert isinstance(fc, resnet.FullyConnected)
    assert fc.weights.shape == (256, 128) and fc.bias is None


def _pack_int(value: int) -> bytes:
    """dlib's packed integer, written independently of the reader under test."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def test_reader_primitives() -> None:
    data = (
        _pack_int(0)
        + _pack_int(-300)
        + _pack_int(2**40 + 5)
        + _pack_int(10737418)  # 0.04 as float_details: 10737418 * 2**-28
        + _pack_int(-28)
        + _pack_int(0)  # inf
        + _pack_int(32000)
        + b"10"
        + _pack_int(5)
        + b"relu_"
        + _pack_int(1)  # tensor version 1: float_details values
        + b"".join(_pack_int(d) for d in (1, 1, 1, 2))
        + _pack_int(3)
        + _pack_int(-1)
        + _pack_int(-1)
        + _pack_int(0)
        + _pack_int(2)  # tensor version 2: raw float32
        + b"".join(_pack_int(d) for d in (1, 2, 1, 1))
        + np.array([0.5, -2.25], "<f4").tobytes()
    )
    r = resnet.DlibReader(data)
    assert (r.read_int(), r.read_int(), r.read_int()) == (0, -300, 2**40 + 5)
    assert r.read_float() == pytest.approx(0.04, rel=1e-7)
    assert r.read_float() == float("inf")
    assert (r.read_bool(), r.read_bool()) == (True, False)
    assert r.read_string() == "relu_"
    np.testing.assert_array_equal(
        r.read_tensor(), np.array([1.5, -1.0], np.float32).reshape(1, 1, 1, 2)
    )
    np.testing.assert_array_equal(
        r.read_tensor(), np.array([0.5, -2.25], np.float32).reshape(1, 2, 1, 1)
    )
    assert r.at_end()
    with pytest.raises(resnet.DlibFormatError):
        r.read_int()


def test_reader_rejects_other_files() -> None:
    path = face_recognition_models.pose_predictor_five_point_model_location()
    with pytest.raises(resnet.DlibFormatError):
        resnet.parse_network(Path(path).read_bytes(), resnet.face_resnet_chain())


def test_bad_thread_count() -> None:
    with pytest.raises(ValueError):
        OnnxEmbedder(threads=0)
