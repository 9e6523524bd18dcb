"""The match stage on real photos: names, the annotated frame and the sighting events."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sauron.codec import Person
from sauron.config import MatchConfig
from sauron.detect.models import FaceModel
from sauron.imaging import bgr_to_rgb, decode_jpeg, encode_jpeg, resize_max_width
from sauron.match.quality import face_quality
from sauron.match.stage import MatchStage, TrackVotes, draw, sighting_events
from sauron.match.watchlist import Watchlist
from sauron.types import NUM_LANDMARKS, Detections, Frame

KNOWN_BGR = (40, 200, 40)
UNKNOWN_BGR = (40, 40, 220)


def load_bgr(path: Path, width: int = 480) -> np.ndarray:
    return resize_max_width(cv2.imread(str(path)), width)


@pytest.fixture(scope="module")
def watchlist(face_model: FaceModel, photos: dict[str, Path]) -> Watchlist:
    det = face_model.detect(bgr_to_rgb(load_bgr(photos["obama.jpg"])))
    assert len(det) == 1
    return Watchlist([Person(name="obama", embeddings=det.embeddings)])


@pytest.fixture(scope="module")
def scene(face_model: FaceModel, photos: dict[str, Path]) -> tuple[Frame, Detections]:
    """One frame with Obama (another photo of him) on the left and Biden on the right."""
    a, b = load_bgr(photos["obama2.jpg"], 400), load_bgr(photos["biden.jpg"], 400)
    h = min(len(a), len(b))
    bgr = np.ascontiguousarray(np.concatenate([a[:h], b[:h]], axis=1))
    frame = Frame(camera="hall", number=9, captured_at=time.time(), jpeg=encode_jpeg(bgr, 90))
    det = face_model.detect(bgr_to_rgb(decode_jpeg(frame.jpeg)))
    assert len(det) == 2
    det = det[np.argsort(det.xyxy[:, 0])]  # left to right
    det = Detections(
        xyxy=det.xyxy,
        confidence=det.confidence,
        landmarks=det.landmarks,
        embeddings=det.embeddings,
        track_ids=np.array([3, 4], np.int64),
    )
    return frame, det


def edge_colour(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Mean colour of the left edge of a drawn 2-px rectangle (below its label)."""
    x0, y0, _, y1 = box.tolist()
    return bgr[y0 + 25 : y1 - 5, x0 : x0 + 1].reshape(-1, 3).mean(axis=0)


def test_names_the_enrolled_person_and_not_a_stranger(
    watchlist: Watchlist, scene: tuple[Frame, Detections]
) -> None:
    frame, det = scene
    stage = MatchStage(MatchConfig(tolerance=0.6), watchlist)
    result, _ = stage.process(frame, det, {"detect": 12.5})
    assert result.frame is frame
    assert result.detections.names == ("obama", None)
    d = result.detections.distances
    assert d.dtype == np.float32
    assert d[0] < 0.6 < d[1]
    np.testing.assert_array_equal(result.detections.xyxy, det.xyxy)
    np.testing.assert_array_equal(result.detections.track_ids, [3, 4])


def test_a_tighter_tolerance_names_nobody(
    watchlist: Watchlist, scene: tuple[Frame, Detections]
) -> None:
    frame, det = scene
    result, events = MatchStage(MatchConfig(tolerance=0.05), watchlist).process(frame, det, {})
    assert result.detections.names == (None, None)
    assert [e["person"] for e in events] == [None, None]
    assert all(e["distance"] is not None for e in events)


def test_annotated_frame_has_the_same_size_and_coloured_boxes(
    watchlist: Watchlist, scene: tuple[Frame, Detections]
) -> None:
    frame, det = scene
    result, _ = MatchStage(MatchConfig(draw=True, annotated_quality=95), watchlist).process(
        frame, det, {}
    )
    assert result.annotated_jpeg[:2] == b"\xff\xd8"
    original = decode_jpeg(frame.jpeg)
    annotated = decode_jpeg(result.annotated_jpeg)
    assert annotated.shape == original.shape
    known = edge_colour(annotated, det.xyxy[0])
    unknown = edge_colour(annotated, det.xyxy[1])
    np.testing.assert_allclose(known, KNOWN_BGR, atol=40)
    np.testing.assert_allclose(unknown, UNKNOWN_BGR, atol=40)
    # away from the boxes the picture is the camera's
    assert float(np.abs(annotated[-20:, :20].astype(int) - original[-20:, :20]).mean()) < 6


def test_one_sighting_per_face_with_the_documented_fields(
    watchlist: Watchlist, scene: tuple[Frame, Detections]
) -> None:
    frame, det = scene
    result, events = MatchStage(MatchConfig(), watchlist).process(frame, det, {})
    assert len(events) == 2
    for event, box, name, dist, track in zip(
        events,
        det.to_trbl(),
        result.detections.names,
        result.detections.distances.tolist(),
        (3, 4),
        strict=True,
    ):
        assert set(event) == {
            "camera",
            "frame",
            "ts",
            "box",
            "person",
            "track",
            "distance",
            "votes",
        }
        assert event["camera"] == "hall"
        assert event["frame"] == 9
        assert event["ts"] == frame.captured_at
        assert event["box"] == box
        assert event["person"] == name
        assert event["track"] == track
        assert event["distance"] == round(dist, 6)
    assert events[0]["person"] == "obama"
    assert events[1]["person"] is None
    assert events[1]["votes"] == 0


def test_timings_and_processing_time(watchlist: Watchlist, scene: tuple[Frame, Detections]) -> None:
    frame, det = scene
    before = time.time()
    result, _ = MatchStage(MatchConfig(draw=True), watchlist).process(frame, det, {"detect": 12.5})
    assert before <= result.processed_at <= time.time()
    assert set(result.timings_ms) == {"detect", "match", "draw"}
    assert result.timings_ms["detect"] == 12.5
    assert result.timings_ms["match"] >= 0
    assert result.timings_ms["draw"] > 0


def test_no_drawing_by_default(watchlist: Watchlist, scene: tuple[Frame, Detections]) -> None:
    """Viewers draw the named boxes when a frame is shown; the matcher only names them."""
    frame, det = scene
    result, events = MatchStage(MatchConfig(), watchlist).process(frame, det, {})
    assert result.annotated_jpeg == b""
    assert result.frame.jpeg == frame.jpeg
    assert result.detections.names == ("obama", None)
    assert len(events) == 2


def test_a_frame_without_faces(watchlist: Watchlist) -> None:
    bgr = np.full((90, 160, 3), 100, np.uint8)
    frame = Frame(camera="hall", number=1, captured_at=0.0, jpeg=encode_jpeg(bgr))
    result, events = MatchStage(MatchConfig(draw=True), watchlist).process(
        frame, Detections.empty(128), {}
    )
    assert events == []
    assert len(result.detections) == 0
    assert decode_jpeg(result.annotated_jpeg).shape == (90, 160, 3)


def test_person_boxes_are_drawn_but_not_matched_nor_sighted(watchlist: Watchlist) -> None:
    bgr = np.full((120, 160, 3), 100, np.uint8)
    frame = Frame(camera="yard", number=2, captured_at=0.0, jpeg=encode_jpeg(bgr, 95))
    people = Detections(
        xyxy=np.array([[20, 10, 80, 110]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((1, 0), np.float32),
        label="person",
    )
    result, events = MatchStage(MatchConfig(draw=True), watchlist).process(frame, people, {})
    assert events == []
    assert result.detections.names == (None,)
    annotated = decode_jpeg(result.annotated_jpeg)
    assert float(np.abs(annotated.astype(int) - decode_jpeg(frame.jpeg)).max()) > 50


def test_draw_works_on_a_copy() -> None:
    bgr = np.zeros((50, 50, 3), np.uint8)
    det = Detections(
        xyxy=np.array([[5, 5, 40, 40]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((1, 128), np.float32),
        names=("ann",),
        distances=np.array([0.25], np.float32),
    )
    out = draw(bgr, det)
    assert (bgr == 0).all()
    assert out.shape == bgr.shape
    assert tuple(out[30, 5]) == KNOWN_BGR  # on the box's left edge, below the label


def test_sighting_events_of_non_faces_are_empty() -> None:
    frame = Frame(camera="c", number=0, captured_at=0.0, jpeg=b"")
    assert sighting_events(frame, Detections.empty(0, label="person")) == []


def one_face(track: int, seed: int, scale: float = 0.01) -> Detections:
    """A face whose embedding is a small step from the others of the same ``scale``."""
    emb = (np.random.default_rng(seed).normal(size=(1, 128)) * scale).astype(np.float32)
    return Detections(
        xyxy=np.array([[10, 10, 60, 60]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=emb,
        track_ids=np.array([track], np.int64),
    )


def vote(votes: TrackVotes, det: Detections, name: str | None, dist: float) -> str | None:
    names, _, _ = votes("cam", det, [name], np.array([dist], np.float32))
    return names[0]


def test_a_marginal_match_waits_for_a_second_vote() -> None:
    votes = TrackVotes(confirm_above=0.5, tolerance=0.6)
    assert vote(votes, one_face(7, 1), "obama", 0.57) is None  # one lucky frame
    assert vote(votes, one_face(7, 1), "obama", 0.57) is None  # the same embedding again
    assert vote(votes, one_face(7, 2), "obama", 0.55) == "obama"  # a fresh one agrees


def test_a_close_match_names_at_once_and_the_majority_rules() -> None:
    votes = TrackVotes(confirm_above=0.5, tolerance=0.6)
    assert vote(votes, one_face(1, 1), "obama", 0.41) == "obama"
    assert vote(votes, one_face(1, 2), None, 0.8) is None  # a tie goes to the latest
    assert vote(votes, one_face(1, 3), "obama", 0.45) == "obama"
    assert vote(votes, one_face(1, 4), None, 0.8) is None
    assert vote(votes, one_face(1, 5), None, 0.9) is None  # strangers outvote it


def test_tracks_vote_apart_and_untracked_faces_are_named_alone() -> None:
    votes = TrackVotes(confirm_above=0.0, tolerance=0.6)
    assert vote(votes, one_face(1, 1), "obama", 0.3) is None  # 0: always two votes
    assert vote(votes, one_face(2, 2), "obama", 0.3) is None  # another track: its own vote
    assert vote(votes, one_face(-1, 3), "obama", 0.59) == "obama"
    names, dists, counts = votes("cam", one_face(1, 4), ["obama"], np.array([0.2], np.float32))
    assert names == ["obama"] and float(dists[0]) == pytest.approx(0.2)
    assert counts.tolist() == [2]


def test_someone_else_in_the_tracks_place_starts_a_fresh_vote() -> None:
    votes = TrackVotes(confirm_above=0.5, tolerance=0.6)
    for seed in range(3):
        assert vote(votes, one_face(5, seed), "obama", 0.4) == "obama"
    # a face far from the track's last embedding (a distance of about 1.1): a new person
    assert vote(votes, one_face(5, 9, scale=0.1), None, 0.9) is None
    assert vote(votes, one_face(5, 9, scale=0.1), None, 0.9) is None


def test_an_untracked_marginal_match_is_named_with_a_single_vote() -> None:
    votes = TrackVotes(confirm_above=0.5, tolerance=0.6)
    names, _, counts = votes("cam", one_face(-1, 1), ["obama"], np.array([0.58], np.float32))
    assert names == ["obama"] and counts.tolist() == [1]
    names, _, counts = votes("cam", one_face(-1, 2), [None], np.array([0.7], np.float32))
    assert names == [None] and counts.tolist() == [0]


def face_at(track: int, seed: int, width: int, yaw: float) -> Detections:
    """A face ``width`` px wide whose nose sits ``yaw`` of the eye span off centre."""
    det = one_face(track, seed)
    eyes = np.array([[20, 30], [26, 30], [34, 30], [40, 30]], np.float32)
    nose = np.array([[30 + yaw * 17, 45]], np.float32)
    return Detections(
        xyxy=np.array([[0, 0, width, width]], np.int32),
        confidence=det.confidence,
        landmarks=np.concatenate([eyes, nose])[None],
        embeddings=det.embeddings,
        track_ids=det.track_ids,
    )


def test_a_track_is_decided_by_its_best_faces_not_its_latest() -> None:
    votes = TrackVotes(confirm_above=0.5, tolerance=0.6, window=3)
    # close and frontal: two agreeing votes
    assert vote(votes, face_at(4, 1, 120, 0.0), "obama", 0.55) is None
    assert vote(votes, face_at(4, 2, 120, 0.0), "obama", 0.55) == "obama"
    # walking away, turned: three poor views that match no one
    for seed in (3, 4, 5):
        assert vote(votes, face_at(4, seed, 30, 0.4), None, 0.7) == "obama"


def test_pose_and_size_set_the_quality_of_a_view() -> None:
    frontal = face_quality(face_at(1, 1, 120, 0.0))[0]
    turned = face_quality(face_at(1, 1, 120, 0.4))[0]
    small = face_quality(face_at(1, 1, 40, 0.0))[0]
    assert frontal == pytest.approx(1.0)
    assert 0 < turned < 0.5 and 0 < small < 0.5
