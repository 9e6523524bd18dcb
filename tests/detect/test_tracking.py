"""Face tracking: IoU linking, when a track must be (re-)embedded, expiry, thumbnails."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sauron.detect.models import FaceModel
from sauron.detect.tracking import THUMB, FaceTracker, iou_matrix, thumbnails
from sauron.imaging import bgr_to_rgb

DIM = 4


def boxes(*rows: tuple[int, int, int, int]) -> np.ndarray:
    return np.array(rows, np.int32).reshape(len(rows), 4)


def unit(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


def embed_needed(
    tracker: FaceTracker, frame_no: int, xyxy: np.ndarray, ids: np.ndarray, need: np.ndarray
) -> None:
    """What the detect stage does: embed the faces that need it, with a fake embedding."""
    emb = np.tile(np.arange(DIM, dtype=np.float32), (int(need.sum()), 1)) + frame_no
    tracker.store(frame_no, ids[need], xyxy[need], emb)


# ----------------------------------------------------------------------------- iou_matrix


def test_iou_of_hand_made_boxes() -> None:
    a = boxes((0, 0, 10, 10), (100, 100, 120, 140))
    b = boxes((0, 0, 10, 10), (5, 0, 15, 10), (0, 0, 5, 5), (10, 0, 20, 10), (50, 50, 60, 60))
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 5)
    # identical, half overlap (50 / 150), contained quarter (25 / 100), touching edge, apart
    np.testing.assert_allclose(iou[0], [1.0, 1 / 3, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0] * 5)


def test_iou_is_symmetric_and_bounded() -> None:
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 100, (30, 2))
    wh = rng.integers(1, 50, (30, 2))
    bx = np.concatenate([xy, xy + wh], axis=1).astype(np.int32)
    iou = iou_matrix(bx, bx)
    np.testing.assert_allclose(iou, iou.T)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    assert ((iou >= 0) & (iou <= 1)).all()


def test_iou_of_degenerate_and_empty_sets() -> None:
    zero = boxes((5, 5, 5, 5))
    assert iou_matrix(zero, zero).tolist() == [[0.0]]  # no NaN from 0 / 0
    assert iou_matrix(np.zeros((0, 4), np.int32), boxes((0, 0, 1, 1))).shape == (0, 1)
    assert iou_matrix(boxes((0, 0, 1, 1)), np.zeros((0, 4), np.int32)).shape == (1, 0)


def test_iou_does_not_overflow_int32_boxes() -> None:
    big = boxes((0, 0, 60000, 60000))  # area 3.6e9 does not fit int32
    assert iou_matrix(big, big).tolist() == [[1.0]]


# ----------------------------------------------------------------------------- linking


def test_first_sight_gets_new_ids_and_needs_embedding() -> None:
    tracker = FaceTracker()
    ids, need = tracker.assign(0, boxes((0, 0, 50, 50), (200, 200, 260, 260)))
    assert ids.tolist() == [1, 2]
    assert need.tolist() == [True, True]
    assert ids.dtype == np.int64


def test_overlapping_boxes_keep_their_id_and_far_boxes_get_new_ones() -> None:
    tracker = FaceTracker()
    f0 = boxes((0, 0, 50, 50), (200, 200, 260, 260))
    ids0, need0 = tracker.assign(0, f0)
    embed_needed(tracker, 0, f0, ids0, need0)
    # both faces moved a little (listed in the other order), and a stranger appeared far away
    f1 = boxes((204, 198, 262, 258), (500, 10, 550, 60), (3, 2, 52, 51))
    ids1, need1 = tracker.assign(1, f1)
    assert ids1.tolist() == [2, 3, 1]
    assert need1.tolist() == [False, True, False]


def test_one_track_cannot_claim_two_boxes() -> None:
    tracker = FaceTracker()
    tracker.assign(0, boxes((0, 0, 100, 100)))
    # IoU 0.90 and 0.95: the better-overlapping box keeps the track, the other starts one
    ids, _ = tracker.assign(1, boxes((0, 10, 100, 100), (0, 0, 100, 95)))
    assert ids.tolist() == [2, 1]


def test_greedy_matching_prefers_the_highest_overlap() -> None:
    tracker = FaceTracker()
    tracker.assign(0, boxes((0, 0, 100, 100), (60, 0, 160, 100)))
    # this box overlaps track 1 by 0.33 and track 2 by 0.82: it belongs to track 2
    ids, _ = tracker.assign(1, boxes((50, 0, 150, 100)))
    assert ids.tolist() == [2]


def test_low_overlap_starts_a_new_track() -> None:
    tracker = FaceTracker(iou_threshold=0.3)
    tracker.assign(0, boxes((0, 0, 100, 100)))
    # IoU = 2000 / 18000 = 0.11
    ids, need = tracker.assign(1, boxes((80, 0, 180, 100)))
    assert ids.tolist() == [2]
    assert need.tolist() == [True]


def test_no_boxes() -> None:
    tracker = FaceTracker()
    tracker.assign(0, boxes((0, 0, 10, 10)))
    ids, need = tracker.assign(1, np.zeros((0, 4), np.int32))
    assert ids.shape == (0,)
    assert need.shape == (0,)


# ----------------------------------------------------------------------------- when to embed


def needs_of_a_still_face(tracker: FaceTracker, frames: int) -> list[bool]:
    """Whether one face that does not move must be embedded, frame by frame."""
    box = boxes((10, 10, 60, 60))
    needs = []
    for frame_no in range(frames):
        ids, need = tracker.assign(frame_no, box)
        needs.append(bool(need[0]))
        embed_needed(tracker, frame_no, box, ids, need)
    return needs


def test_refresh_every_n_frames() -> None:
    needs = needs_of_a_still_face(FaceTracker(refresh_every=5, confirm_after=None), 12)
    assert needs == [
        True,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        True,
        False,
    ]


def test_needs_embedding_until_one_is_stored() -> None:
    tracker = FaceTracker(refresh_every=100)
    box = boxes((10, 10, 60, 60))
    for frame_no in range(3):
        _, need = tracker.assign(frame_no, box)
        assert need.tolist() == [True]


def test_growth_by_grow_ratio_triggers_embedding() -> None:
    tracker = FaceTracker(refresh_every=1000, grow_ratio=1.4)
    first = boxes((0, 0, 100, 100))  # area 10,000
    ids, need = tracker.assign(0, first)
    embed_needed(tracker, 0, first, ids, need)
    _, need = tracker.assign(1, boxes((0, 0, 118, 118)))  # 13,924 < 14,000
    assert need.tolist() == [False]
    _, need = tracker.assign(2, boxes((0, 0, 119, 119)))  # 14,161 >= 14,000
    assert need.tolist() == [True]


def test_growth_is_measured_from_the_last_embedding() -> None:
    tracker = FaceTracker(refresh_every=1000, grow_ratio=1.4)
    sizes = [100, 110, 118, 119, 125, 140, 141]
    needs = []
    for frame_no, side in enumerate(sizes):
        box = boxes((0, 0, side, side))
        ids, need = tracker.assign(frame_no, box)
        needs.append(bool(need[0]))
        embed_needed(tracker, frame_no, box, ids, need)
    # embedded at 100 (area 10,000), then at 119 (14,161); 141^2 = 19,881 >= 1.4 * 14,161
    assert needs == [True, False, False, True, False, False, True]


def test_shrinking_does_not_trigger_embedding() -> None:
    tracker = FaceTracker(refresh_every=1000)
    ids, need = tracker.assign(0, boxes((0, 0, 100, 100)))
    embed_needed(tracker, 0, boxes((0, 0, 100, 100)), ids, need)
    _, need = tracker.assign(1, boxes((0, 0, 80, 80)))
    assert need.tolist() == [False]


def test_appearance_change_triggers_embedding() -> None:
    tracker = FaceTracker(refresh_every=1000, min_similarity=0.8, confirm_after=None)
    box = boxes((0, 0, 100, 100))
    a = unit(1, 0, 0)
    ids, need = tracker.assign(0, box, a[None])
    assert need.tolist() == [True]  # first sight, whatever the thumbnail
    embed_needed(tracker, 0, box, ids, need)
    b = unit(0.9, np.sqrt(1 - 0.81), 0)  # similarity 0.9 with a
    _, need = tracker.assign(1, box, b[None])
    assert need.tolist() == [False]
    c = unit(0.9, -np.sqrt(1 - 0.81), 0)  # 0.9^2 - 0.19 = 0.62 with b: someone else
    _, need = tracker.assign(2, box, c[None])
    assert need.tolist() == [True]


def test_appearance_is_compared_with_the_previous_frame() -> None:
    tracker = FaceTracker(refresh_every=1000, min_similarity=0.8, confirm_after=None)
    box = boxes((0, 0, 100, 100))
    ids, need = tracker.assign(0, box, unit(1, 0)[None])
    embed_needed(tracker, 0, box, ids, need)
    # a slow drift: each step is similar to the last, though far from the first in the end
    needs = []
    for frame_no, angle in enumerate(np.radians([20, 40, 60, 80, 100]), start=1):
        _, need = tracker.assign(frame_no, box, unit(np.cos(angle), np.sin(angle))[None])
        needs.append(bool(need[0]))
    assert needs == [False] * 5


# ----------------------------------------------------------------------------- expiry


@pytest.mark.parametrize(("gap", "same"), [(1, True), (5, True), (6, False)])
def test_tracks_expire_after_max_gap(gap: int, same: bool) -> None:
    tracker = FaceTracker(max_gap=5, confirm_after=None)
    box = boxes((10, 10, 60, 60))
    ids, need = tracker.assign(0, box)
    embed_needed(tracker, 0, box, ids, need)
    for frame_no in range(1, gap):
        tracker.assign(frame_no, np.zeros((0, 4), np.int32))  # the face is not seen
    ids, need = tracker.assign(gap, box)
    assert (ids.tolist() == [1]) is same
    assert need.tolist() == [not same]
    assert set(tracker.tracks) == ({1} if same else {2})


def test_ids_are_never_reused() -> None:
    tracker = FaceTracker(max_gap=0)
    seen = [int(tracker.assign(n * 2, boxes((0, 0, 10, 10)))[0][0]) for n in range(5)]
    assert seen == [1, 2, 3, 4, 5]


def test_frame_from_the_past_starts_fresh() -> None:
    tracker = FaceTracker()
    tracker.assign(10, boxes((0, 0, 50, 50)))
    ids, _ = tracker.assign(3, boxes((0, 0, 50, 50)))
    assert ids.tolist() == [2]


# ----------------------------------------------------------------------------- embeddings


def test_embeddings_carry_the_last_stored_one() -> None:
    tracker = FaceTracker(refresh_every=1000)
    f0 = boxes((0, 0, 50, 50))
    ids, _ = tracker.assign(0, f0)
    tracker.store(0, ids, f0, np.full((1, DIM), 7.0, np.float32))
    f1 = boxes((1, 1, 51, 51), (300, 300, 350, 350))
    ids, need = tracker.assign(1, f1)
    assert need.tolist() == [False, True]
    out = tracker.embeddings(ids, DIM)
    assert out.shape == (2, DIM)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [7.0] * DIM)
    assert np.isnan(out[1]).all()  # not embedded yet


def test_store_records_area_and_time() -> None:
    tracker = FaceTracker()
    box = boxes((0, 0, 30, 40))
    ids, _ = tracker.assign(4, box)
    tracker.store(4, ids, box, np.zeros((1, DIM), np.float32))
    t = tracker.tracks[int(ids[0])]
    assert (t.embedded_at, t.embedded_area, t.seen_at) == (4, 1200.0, 4)


# ----------------------------------------------------------------------------- thumbnails


@pytest.fixture(scope="module")
def faces(
    photos: dict[str, Path], face_model: FaceModel
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{photo: (grey image, landmarks of its one face)}"""
    out = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        bgr = cv2.imread(str(photos[name]))
        det, _ = face_model.locate(bgr_to_rgb(bgr))
        assert len(det) == 1
        out[name] = (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), det.landmarks)
    return out


def test_thumbnails_are_zero_mean_unit_norm(
    faces: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    gray, lm = faces["obama.jpg"]
    th = thumbnails(gray, lm)
    assert th.shape == (1, THUMB * THUMB)
    assert th.dtype == np.float32
    assert abs(float(th.mean())) < 1e-5
    assert float(np.linalg.norm(th[0])) == pytest.approx(1.0, abs=1e-5)


def test_thumbnails_follow_the_landmarks_not_the_frame(
    faces: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    gray, lm = faces["obama.jpg"]
    ref = thumbnails(gray, lm)[0]
    moved = np.roll(gray, (7, -5), axis=(0, 1))
    assert float(ref @ thumbnails(moved, lm + np.float32([-5, 7]))[0]) > 0.99
    bigger = cv2.resize(gray, None, fx=1.3, fy=1.3)
    assert float(ref @ thumbnails(bigger, lm * 1.3)[0]) > 0.95


def test_thumbnails_tell_people_apart(faces: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    sig = {name: thumbnails(*faces[name])[0] for name in faces}
    assert float(sig["obama.jpg"] @ sig["biden.jpg"]) < 0.8
    assert float(sig["obama2.jpg"] @ sig["biden.jpg"]) < 0.8


def test_thumbnails_of_no_faces() -> None:
    assert thumbnails(np.zeros((10, 10), np.uint8), np.zeros((0, 5, 2), np.float32)).shape == (
        0,
        THUMB * THUMB,
    )


def test_a_new_track_is_embedded_once_more_to_confirm_its_identity() -> None:
    needs = needs_of_a_still_face(FaceTracker(refresh_every=1000, confirm_after=3), 10)
    assert needs == [True, False, False, True] + [False] * 6
