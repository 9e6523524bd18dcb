"""Detector plugins on real photos with the real models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sauron.config import DETECTORS, DetectConfig
from sauron.demo.samples import astronaut_photo
from sauron.detect.models import (
    FACE_DETECTORS,
    Detector,
    FaceModel,
    ModelError,
    PeopleModel,
    available_detectors,
    create_detector,
    from_rect,
    register,
    to_rect,
)
from sauron.imaging import bgr_to_rgb, resize_max_width
from sauron.types import EMBEDDING_DIM, NUM_LANDMARKS, Detections

#: the face_recognition convention: a Euclidean distance below 0.6 is the same person
SAME_PERSON = 0.6


def read_rgb(path: Path, max_width: int | None = None) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return bgr_to_rgb(resize_max_width(bgr, max_width))


@pytest.fixture(scope="module")
def rgbs(photos: dict[str, Path]) -> dict[str, np.ndarray]:
    return {name: read_rgb(path) for name, path in photos.items()}


@pytest.fixture(scope="module")
def found(face_model: FaceModel, rgbs: dict[str, np.ndarray]) -> dict[str, Detections]:
    return {
        name: face_model.detect(rgbs[name])
        for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "obama_partial_face.jpg")
    }


def assert_well_formed(det: Detections, shape: tuple[int, ...], dim: int, label: str) -> None:
    h, w = shape[:2]
    n = len(det)
    assert det.label == label
    assert det.xyxy.shape == (n, 4)
    assert det.xyxy.dtype == np.int32
    assert det.confidence.shape == (n,)
    assert det.landmarks.shape == (n, NUM_LANDMARKS, 2)
    assert det.embeddings.shape == (n, dim)
    assert det.embeddings.dtype == np.float32
    assert det.names == (None,) * n
    assert np.isnan(det.distances).all()
    assert (det.track_ids == -1).all()
    if n:
        x0, y0, x1, y1 = det.xyxy.T
        assert (x0 >= 0).all() and (y0 >= 0).all()
        assert (x1 <= w).all() and (y1 <= h).all()
        assert (x0 < x1).all() and (y0 < y1).all()


# ----------------------------------------------------------------------------- FaceModel


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg", "obama2.jpg"])
def test_one_face_with_box_and_landmarks(
    name: str, found: dict[str, Detections], rgbs: dict[str, np.ndarray]
) -> None:
    det = found[name]
    assert len(det) == 1
    assert_well_formed(det, rgbs[name].shape, EMBEDDING_DIM, "face")
    x0, y0, x1, y1 = det.xyxy[0].tolist()
    assert x1 - x0 > 100  # these are portraits: the face is large
    assert det.confidence[0] > 0
    # dlib's 5 points (eye corners and nose) lie within the box, give or take a margin
    margin = 0.15 * (x1 - x0)
    lx, ly = det.landmarks[0].T
    assert ((lx >= x0 - margin) & (lx <= x1 + margin)).all()
    assert ((ly >= y0 - margin) & (ly <= y1 + margin)).all()
    # the eyes are above the nose tip
    assert max(ly[:4]) < ly[4]


def test_embeddings_are_finite_unit_scale(found: dict[str, Detections]) -> None:
    for det in found.values():
        assert np.isfinite(det.embeddings).all()
        norms = np.linalg.norm(det.embeddings, axis=1)
        assert ((norms > 0.2) & (norms < 2.0)).all()


def test_same_person_is_near_and_another_is_far(found: dict[str, Detections]) -> None:
    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(found[a].embeddings[0] - found[b].embeddings[0]))

    assert dist("obama.jpg", "obama2.jpg") < SAME_PERSON
    assert dist("obama.jpg", "biden.jpg") > SAME_PERSON
    assert dist("obama2.jpg", "biden.jpg") > SAME_PERSON


def test_partial_face_box_is_clipped_to_the_image(
    found: dict[str, Detections], rgbs: dict[str, np.ndarray]
) -> None:
    det = found["obama_partial_face.jpg"]
    assert len(det) == 1
    assert_well_formed(det, rgbs["obama_partial_face.jpg"].shape, EMBEDDING_DIM, "face")
    assert det.xyxy[0, 0] == 0  # the face runs off the left edge


def test_locate_then_embed_equals_detect(
    face_model: FaceModel, rgbs: dict[str, np.ndarray], found: dict[str, Detections]
) -> None:
    rgb = rgbs["biden.jpg"]
    det, shapes = face_model.locate(rgb)
    assert len(shapes) == len(det) == 1
    assert np.isnan(det.embeddings).all()  # placeholders until embedded
    np.testing.assert_array_equal(det.xyxy, found["biden.jpg"].xyxy)
    emb = face_model.embed(rgb, shapes)
    assert emb.shape == (1, EMBEDDING_DIM)
    np.testing.assert_allclose(emb, found["biden.jpg"].embeddings, atol=1e-6)


def test_boxes_cross_the_dlib_edge_unchanged() -> None:
    rect = to_rect(np.array([10, 20, 110, 140], np.int32))
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == (10, 20, 110, 140)
    box = from_rect(rect)
    assert box == (10, 20, 110, 140) and all(type(v) is int for v in box)


def test_embed_nothing(face_model: FaceModel, rgbs: dict[str, np.ndarray]) -> None:
    out = face_model.embed(rgbs["obama.jpg"], [])
    assert out.shape == (0, EMBEDDING_DIM)
    assert out.dtype == np.float32


def test_no_face_in_a_blank_image(face_model: FaceModel) -> None:
    blank = np.full((240, 320, 3), 128, np.uint8)
    det = face_model.detect(blank)
    assert len(det) == 0
    assert det.embeddings.shape == (0, EMBEDDING_DIM)
    det, shapes = face_model.locate(blank)
    assert (len(det), shapes) == (0, [])


def test_min_face_drops_small_faces(
    face_model: FaceModel, rgbs: dict[str, np.ndarray], found: dict[str, Detections]
) -> None:
    width = int(found["obama.jpg"].xyxy[0, 2] - found["obama.jpg"].xyxy[0, 0])
    strict = FaceModel(detector="dlib-hog", embedder="dlib", min_face=width + 20)
    assert len(strict.detect(rgbs["obama.jpg"])) == 0
    lenient = FaceModel(detector="dlib-hog", embedder="dlib", min_face=width - 20)
    assert len(lenient.detect(rgbs["obama.jpg"])) == 1


def test_two_faces_side_by_side(face_model: FaceModel, rgbs: dict[str, np.ndarray]) -> None:
    a, b = rgbs["obama.jpg"], rgbs["biden.jpg"]
    h = min(a.shape[0], b.shape[0])
    both = np.ascontiguousarray(np.concatenate([a[:h], b[:h]], axis=1))
    det = face_model.detect(both)
    assert len(det) == 2
    assert_well_formed(det, both.shape, EMBEDDING_DIM, "face")
    left = int(np.argmin(det.xyxy[:, 0]))
    assert det.xyxy[left, 2] < a.shape[1] <= det.xyxy[1 - left, 0]


def test_cnn_detector_finds_the_face(photos: dict[str, Path]) -> None:
    model = create_detector(DetectConfig(detector={"type": "dlib-cnn"}, embedder="dlib"))
    assert isinstance(model, FaceModel)
    assert model.cnn
    rgb = read_rgb(photos["obama.jpg"], max_width=320)
    det = model.detect(rgb)
    assert len(det) == 1
    assert_well_formed(det, rgb.shape, EMBEDDING_DIM, "face")


# ----------------------------------------------------------------------------- PeopleModel


def test_people_model_on_the_astronaut() -> None:
    rgb = read_rgb(astronaut_photo())
    model = PeopleModel()
    det = model.detect(rgb)
    assert_well_formed(det, rgb.shape, 0, "person")
    assert det.embeddings.shape == (len(det), 0)
    assert (det.confidence >= model.min_confidence).all()
    assert (det.landmarks == 0).all()


def test_people_model_on_a_blank_image() -> None:
    det = PeopleModel().detect(np.zeros((200, 200, 3), np.uint8))
    assert len(det) == 0
    assert det.label == "person"
    assert det.embeddings.shape == (0, 0)


# ----------------------------------------------------------------------------- registry


def test_registry_matches_the_config_choices() -> None:
    """Every detector of the configuration has its plugin, and no plugin is without one."""
    assert available_detectors() == sorted(DETECTORS)
    assert set(FACE_DETECTORS) == {"centerface", "dlib-hog", "dlib-cnn"}


def test_a_plugin_without_settings_is_refused() -> None:
    with pytest.raises(ModelError, match=r"no settings for detector\(s\) \['yolo'\]"):
        register("yolo")


def test_face_model_defaults_to_the_configured_detector() -> None:
    assert FaceModel().type == DetectConfig().detector.type == "centerface"


@pytest.mark.parametrize(
    ("name", "cls", "label"),
    [
        ("centerface", FaceModel, "face"),
        ("dlib-hog", FaceModel, "face"),
        ("dlib-cnn", FaceModel, "face"),
        pytest.param("opencv-people", PeopleModel, "person"),
    ],
)
def test_create_detector_picks_each_registered_name(
    name: str, cls: type[Detector], label: str
) -> None:
    model = create_detector(DetectConfig(detector={"type": name}, embedder="dlib"))
    assert type(model) is cls
    assert model.label == label
    if isinstance(model, FaceModel):
        assert model.type == name
        assert model.cnn is (name != "dlib-hog")
        assert model.embedder.name == "dlib"


def test_detector_type_names_its_plugin() -> None:
    model = create_detector(DetectConfig(detector={"type": "dlib-hog"}, embedder="dlib"))
    assert model.type == "dlib-hog"


def test_create_detector_passes_settings_through() -> None:
    model = create_detector(
        DetectConfig(detector={"type": "dlib-hog", "upsample": 2}, min_face=33, embedder="dlib")
    )
    assert isinstance(model, FaceModel)
    assert (model.upsample, model.min_face, model.cnn) == (2, 33, False)
    cfg = {"type": "centerface", "input_scale": 0.75, "upsample": 1}
    model = create_detector(DetectConfig(detector=cfg, embedder="dlib"))
    assert isinstance(model, FaceModel)
    assert (model.type, model.input_scale, model.upsample) == ("centerface", 0.75, 1)
