"""A view's quality with the frame's pixels: sharpness counts, brightness does not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sauron.codec import Person
from sauron.config import MatchConfig
from sauron.detect.models import FaceModel
from sauron.imaging import ImageDecodeError, bgr_to_rgb, encode_jpeg, resize_max_width
from sauron.match.quality import face_quality, sharpness
from sauron.match.stage import MatchStage, TrackVotes
from sauron.match.watchlist import Watchlist
from sauron.types import Detections, Frame


@pytest.fixture(scope="module")
def face(face_model: FaceModel, photos: dict[str, Path]) -> tuple[np.ndarray, Detections]:
    """A real frame (Obama, face about 100 px wide) and the detector's view of it."""
    bgr = resize_max_width(cv2.imread(str(photos["obama.jpg"])), 400)
    det = face_model.detect(bgr_to_rgb(bgr))
    assert len(det) == 1
    return bgr, det


def blurred(bgr: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(bgr, (0, 0), sigma)


def relit(bgr: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(bgr.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def test_a_sharp_face_scores_higher_than_the_same_face_blurred(
    face: tuple[np.ndarray, Detections],
) -> None:
    bgr, det = face
    plain = face_quality(det)[0]
    sharp = face_quality(det, bgr)[0]
    soft = face_quality(det, blurred(bgr, 1.5))[0]
    softer = face_quality(det, blurred(bgr, 3.0))[0]
    assert sharp == pytest.approx(plain)  # a sharp photo loses nothing
    assert softer < soft < 0.8 * sharp
    assert softer < 0.3 * sharp


@pytest.mark.parametrize("gain,offset", [(0.5, 0.0), (0.35, 10.0), (0.7, 60.0)])
def test_brightness_and_contrast_do_not_count(
    face: tuple[np.ndarray, Detections], gain: float, offset: float
) -> None:
    bgr, det = face
    for sigma in (0.0, 1.5):  # sharp (1 at the top of the scale) and half way down
        img = blurred(bgr, sigma) if sigma else bgr
        ref = face_quality(det, img)[0]
        assert face_quality(det, relit(img, gain, offset))[0] == pytest.approx(ref, rel=0.1)


def test_sharpness_of_boxes_off_the_image_or_flat() -> None:
    grey = np.full((100, 100), 128, np.uint8)
    boxes = np.array([[10, 10, 60, 60], [200, 200, 260, 260], [-50, -50, -10, -10]], np.int32)
    assert sharpness(grey, boxes).tolist() == [0.0, 0.0, 0.0]
    noise = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    assert sharpness(noise, boxes[:1])[0] == pytest.approx(1.0)


def view(det: Detections, track: int, step: int) -> Detections:
    """The detected face as a track's fresh embedding (a small step each time)."""
    emb = det.embeddings + np.float32(0.001 * step)
    return Detections(
        xyxy=det.xyxy,
        confidence=det.confidence,
        landmarks=det.landmarks,
        embeddings=emb,
        track_ids=np.array([track], np.int64),
    )


def test_a_sharp_view_outvotes_blurred_ones_of_the_same_track(
    face: tuple[np.ndarray, Detections],
) -> None:
    bgr, det = face
    soft = blurred(bgr, 3.0)

    def track(pixels: bool) -> str | None:
        votes = TrackVotes(confirm_above=0.5, tolerance=0.6, window=2)
        name: str | None = None
        # blurred, matching no one; then sharp and close to Obama; then blurred again
        for step, (img, who, dist) in enumerate(
            [(soft, None, 0.65), (bgr, "obama", 0.45), (soft, None, 0.65)]
        ):
            names, _, _ = votes(
                "cam",
                view(det, 8, step),
                [who],
                np.array([dist], np.float32),
                (lambda img=img: img) if pixels else None,
            )
            name = names[0]
        return name

    # on size and pose alone the views are equal: the latest two stay, the tie goes to the
    # latest; with pixels the sharp view stays and weighs more than the blurred one
    assert track(pixels=False) is None
    assert track(pixels=True) == "obama"


def test_pixels_are_asked_for_only_when_a_vote_is_cast(
    face: tuple[np.ndarray, Detections],
) -> None:
    bgr, det = face
    asked: list[int] = []

    def pixels() -> np.ndarray:
        asked.append(1)
        return bgr

    votes = TrackVotes(confirm_above=0.5, tolerance=0.6)
    for _ in range(3):  # the same embedding carried over the frames in between
        votes("cam", view(det, 2, 0), ["obama"], np.array([0.4], np.float32), pixels)
    votes("cam", view(det, 2, 1), ["obama"], np.array([0.4], np.float32), pixels)
    untracked = view(det, -1, 2)
    votes("cam", untracked, ["obama"], np.array([0.4], np.float32), pixels)
    assert len(asked) == 2


def test_the_match_stage_weighs_votes_with_the_frame_it_decodes_once(
    face: tuple[np.ndarray, Detections],
) -> None:
    bgr, det = face
    watchlist = Watchlist([Person(name="obama", embeddings=det.embeddings)])
    frames = [encode_jpeg(blurred(bgr, 3.0), 90), encode_jpeg(bgr, 90)]
    for draw in (False, True):
        stage = MatchStage(MatchConfig(draw=draw), watchlist)
        for step, jpeg in enumerate(frames):
            frame = Frame(camera="hall", number=step, captured_at=0.0, jpeg=jpeg)
            result, _ = stage.process(frame, view(det, 5, step), {})
            assert result.detections.names == ("obama",)
            assert bool(result.annotated_jpeg) == draw
        (_, kept), *_ = stage.votes._votes.values()
        sharp, soft = (v.quality for v in kept)  # best view first
        assert soft < 0.3 * sharp


def test_a_frame_that_does_not_decode_is_voted_on_size_and_pose(
    face: tuple[np.ndarray, Detections],
) -> None:
    _, det = face
    watchlist = Watchlist([Person(name="obama", embeddings=det.embeddings)])
    frame = Frame(camera="hall", number=1, captured_at=0.0, jpeg=b"not a jpeg")
    result, _ = MatchStage(MatchConfig(), watchlist).process(frame, view(det, 5, 0), {})
    assert result.detections.names == ("obama",)
    with pytest.raises(ImageDecodeError):  # drawing it still fails as it did
        MatchStage(MatchConfig(draw=True), watchlist).process(frame, view(det, 5, 0), {})
