"""Frame, Detections and Result: shape checks, row selection and the results record."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sauron.types import EMBEDDING_DIM, NUM_LANDMARKS, Detections, Frame, Result


def make_detections(n: int, dim: int = EMBEDDING_DIM, label: str = "face") -> Detections:
    """n distinguishable rows: row i has box (10i, 20i, 10i+5, 20i+7), confidence i/10, ..."""
    i = np.arange(n)
    xyxy = np.stack([10 * i, 20 * i, 10 * i + 5, 20 * i + 7], axis=1).astype(np.int32)
    landmarks = np.arange(n * NUM_LANDMARKS * 2, dtype=np.float32).reshape(n, NUM_LANDMARKS, 2)
    embeddings = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    return Detections(
        xyxy=xyxy.reshape(n, 4),
        confidence=(i / 10).astype(np.float32),
        landmarks=landmarks,
        embeddings=embeddings,
        label=label,
    )


# ----------------------------------------------------------------------------- Frame


def test_frame_keeps_its_fields() -> None:
    frame = Frame(camera="door", number=7, captured_at=12.5, jpeg=b"\xff\xd8")
    assert (frame.camera, frame.number, frame.captured_at, frame.jpeg) == (
        "door",
        7,
        12.5,
        b"\xff\xd8",
    )


def test_frame_refuses_empty_camera() -> None:
    with pytest.raises(ValueError, match="camera id must be a non-empty string"):
        Frame(camera="", number=0, captured_at=0.0, jpeg=b"")


def test_frame_refuses_negative_number() -> None:
    with pytest.raises(ValueError, match="frame number must be >= 0, but got -1"):
        Frame(camera="door", number=-1, captured_at=0.0, jpeg=b"")


# ----------------------------------------------------------------------------- Detections


def test_detections_fill_optional_columns() -> None:
    det = make_detections(3)
    assert len(det) == 3
    assert det.names == (None, None, None)
    assert det.distances.shape == (3,)
    assert np.isnan(det.distances).all()
    np.testing.assert_array_equal(det.track_ids, [-1, -1, -1])
    assert det.track_ids.dtype == np.int64
    assert det.label == "face"


def test_detections_keep_given_optional_columns() -> None:
    base = make_detections(2)
    det = Detections(
        xyxy=base.xyxy,
        confidence=base.confidence,
        landmarks=base.landmarks,
        embeddings=base.embeddings,
        names=("ann", None),
        distances=np.array([0.25, 0.75], np.float32),
        track_ids=np.array([4, 9], np.int64),
    )
    assert det.names == ("ann", None)
    np.testing.assert_array_equal(det.distances, [0.25, 0.75])
    np.testing.assert_array_equal(det.track_ids, [4, 9])


@pytest.mark.parametrize(
    ("field", "value", "expected", "actual"),
    [
        ("xyxy", np.zeros((2, 3), np.int32), "(2, 4)", "(2, 3)"),
        ("confidence", np.zeros(3, np.float32), "(2,)", "(3,)"),
        ("confidence", np.zeros((2, 1), np.float32), "(2,)", "(2, 1)"),
        ("landmarks", np.zeros((2, 68, 2), np.float32), "(2, 5, 2)", "(2, 68, 2)"),
        ("landmarks", np.zeros((2, 10), np.float32), "(2, 5, 2)", "(2, 10)"),
        ("distances", np.zeros(1, np.float32), "(2,)", "(1,)"),
        ("track_ids", np.zeros(5, np.int64), "(2,)", "(5,)"),
    ],
)
def test_detections_shape_errors_name_expected_and_actual(
    field: str, value: np.ndarray, expected: str, actual: str
) -> None:
    base = make_detections(2)
    kwargs = {
        "xyxy": base.xyxy,
        "confidence": base.confidence,
        "landmarks": base.landmarks,
        "embeddings": base.embeddings,
        field: value,
    }
    with pytest.raises(ValueError) as info:
        Detections(**kwargs)
    text = str(info.value)
    assert text.startswith(field)
    assert f"shape {expected}" in text
    assert f"but got shape {actual}" in text


def test_detections_embedding_rows_must_match() -> None:
    base = make_detections(2)
    with pytest.raises(
        ValueError,
        match=r"embeddings must be a 2D np.ndarray with 2 rows, "
        r"but got shape \(3, 128\)",
    ):
        Detections(
            xyxy=base.xyxy,
            confidence=base.confidence,
            landmarks=base.landmarks,
            embeddings=np.zeros((3, 128), np.float32),
        )


def test_detections_embeddings_must_be_2d() -> None:
    base = make_detections(2)
    with pytest.raises(ValueError, match=r"but got shape \(2,\)"):
        Detections(
            xyxy=base.xyxy,
            confidence=base.confidence,
            landmarks=base.landmarks,
            embeddings=np.zeros(2, np.float32),
        )


def test_detections_names_length_must_match() -> None:
    base = make_detections(2)
    with pytest.raises(ValueError, match="names must have 2 entries, but got 3"):
        Detections(
            xyxy=base.xyxy,
            confidence=base.confidence,
            landmarks=base.landmarks,
            embeddings=base.embeddings,
            names=("a", "b", "c"),
        )


@pytest.mark.parametrize(("dim", "label"), [(0, "face"), (128, "face"), (0, "person")])
def test_empty_detections(dim: int, label: str) -> None:
    det = Detections.empty(dim, label=label)
    assert len(det) == 0
    assert det.xyxy.shape == (0, 4)
    assert det.confidence.shape == (0,)
    assert det.landmarks.shape == (0, NUM_LANDMARKS, 2)
    assert det.embeddings.shape == (0, dim)
    assert det.names == ()
    assert det.distances.shape == (0,)
    assert det.track_ids.shape == (0,)
    assert det.label == label
    assert det.to_trbl() == []
    assert det.areas.shape == (0,)


def test_boolean_mask_selects_rows() -> None:
    det = make_detections(4, label="person")
    det = det.with_identities(["a", None, "c", "d"], np.array([0.1, 0.2, 0.3, 0.4]))
    sub = det[np.array([True, False, True, False])]
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.xyxy, det.xyxy[[0, 2]])
    np.testing.assert_array_equal(sub.confidence, det.confidence[[0, 2]])
    np.testing.assert_array_equal(sub.landmarks, det.landmarks[[0, 2]])
    np.testing.assert_array_equal(sub.embeddings, det.embeddings[[0, 2]])
    np.testing.assert_array_equal(sub.distances, np.float32([0.1, 0.3]))
    assert sub.names == ("a", "c")
    assert sub.label == "person"


def test_index_list_selects_and_reorders_rows() -> None:
    det = make_detections(4)
    det = Detections(
        xyxy=det.xyxy,
        confidence=det.confidence,
        landmarks=det.landmarks,
        embeddings=det.embeddings,
        names=("a", "b", "c", "d"),
        track_ids=np.array([10, 11, 12, 13], np.int64),
    )
    sub = det[[3, 1]]
    assert sub.names == ("d", "b")
    np.testing.assert_array_equal(sub.track_ids, [13, 11])
    np.testing.assert_array_equal(sub.xyxy, det.xyxy[[3, 1]])
    np.testing.assert_array_equal(sub.embeddings, det.embeddings[[3, 1]])


def test_slice_and_all_false_mask() -> None:
    det = make_detections(5)
    assert [r[0] for r in det[1:3].xyxy.tolist()] == [10, 20]
    none = det[np.zeros(5, bool)]
    assert len(none) == 0
    assert none.embeddings.shape == (0, EMBEDDING_DIM)


def test_with_identities_sets_names_and_float32_distances() -> None:
    det = make_detections(2).with_identities(["bob", None], [0.5, float("nan")])
    assert det.names == ("bob", None)
    assert det.distances.dtype == np.float32
    assert det.distances[0] == np.float32(0.5)
    assert np.isnan(det.distances[1])


def test_areas_clip_inverted_boxes_to_zero() -> None:
    det = Detections(
        xyxy=np.array([[0, 0, 10, 20], [5, 5, 2, 9]], np.int32),
        confidence=np.ones(2, np.float32),
        landmarks=np.zeros((2, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((2, 0), np.float32),
    )
    np.testing.assert_array_equal(det.areas, [200, 0])


def test_to_trbl_reorders_xyxy() -> None:
    det = make_detections(2)
    # (left, top, right, bottom) -> [top, right, bottom, left]
    assert det.to_trbl() == [[0, 5, 7, 0], [20, 15, 27, 10]]
    assert all(type(v) is int for box in det.to_trbl() for v in box)


# ----------------------------------------------------------------------------- Result


def test_result_to_json_fields() -> None:
    frame = Frame(camera="lobby", number=42, captured_at=1000.0, jpeg=b"x")
    det = Detections(
        xyxy=np.array([[1, 2, 3, 4], [10, 20, 30, 40]], np.int32),
        confidence=np.ones(2, np.float32),
        landmarks=np.zeros((2, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((2, 128), np.float32),
        names=("alice", None),
        distances=np.array([0.3125, np.nan], np.float32),
    )
    result = Result(frame=frame, detections=det, processed_at=1000.0123456)
    record = result.to_json()
    assert set(record) == {"camera", "frame", "ts", "latency_ms", "faces"}
    assert record["camera"] == "lobby"
    assert record["frame"] == 42
    assert record["ts"] == 1000.0
    assert record["latency_ms"] == pytest.approx(12.346, abs=1e-3)
    assert record["latency_ms"] == round(record["latency_ms"], 3)
    assert record["faces"] == [
        {"box": [2, 3, 4, 1], "person": "alice", "distance": 0.3125, "votes": 1},
        {"box": [20, 30, 40, 10], "person": None, "distance": None, "votes": 0},
    ]


def test_result_latency_and_distance_rounding() -> None:
    frame = Frame(camera="c", number=0, captured_at=5.0, jpeg=b"")
    det = make_detections(1).with_identities(["x"], [1 / 3])
    result = Result(frame=frame, detections=det, processed_at=5.25)
    assert result.latency_ms == pytest.approx(250.0)
    (face,) = result.to_json()["faces"]
    assert face["distance"] == round(float(np.float32(1 / 3)), 6)
    assert isinstance(face["distance"], float)


def test_result_to_json_with_no_faces_and_infinite_distance() -> None:
    frame = Frame(camera="c", number=1, captured_at=0.0, jpeg=b"")
    assert (
        Result(frame=frame, detections=Detections.empty(), processed_at=0.0).to_json()["faces"]
        == []
    )
    det = make_detections(1).with_identities([None], [math.inf])
    assert (
        Result(frame=frame, detections=det, processed_at=0.0).to_json()["faces"][0]["distance"]
        is None
    )
