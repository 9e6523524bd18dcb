"""The realistic workload: faces over real footage, and the detector study on it."""

from __future__ import annotations

import numpy as np
import pytest

from sauron.imaging import decode_jpeg
from sauron_bench.bare_loop import Score
from sauron_bench.detectors import centerface_finder, hog_finder, measure_detector
from sauron_bench.realistic import face_widths, make_realistic_workload
from sauron_bench.workload import WATCHED


@pytest.fixture(scope="module")
def work():  # type: ignore[no-untyped-def]
    return make_realistic_workload(cameras=2, frames=40)


def test_frames_are_real_footage_with_faces_of_the_asked_sizes(work) -> None:  # type: ignore[no-untyped-def]
    assert len(work.clips) == 2 and all(len(c) == 40 for c in work.clips)
    first = decode_jpeg(work.jpeg(0, 0))
    assert first.shape == (360, 640, 3)
    # the background moves: frames a second apart differ outside the faces too
    later = decode_jpeg(work.jpeg(0, 10))
    assert float(np.mean(np.abs(first.astype(int) - later.astype(int)))) > 2.0
    widths = face_widths(work)
    assert len(widths) > 40 and widths.min() >= 35 and widths.max() <= 155
    people = {p for c in work.clips for row in c.truth for p, _ in row}
    assert WATCHED in people and len(people) >= 3  # the watched person and strangers
    assert max(len(row) for c in work.clips for row in c.truth) >= 2  # several at once


def test_same_options_give_the_same_frames(work) -> None:  # type: ignore[no-untyped-def]
    again = make_realistic_workload(cameras=1, frames=40)
    assert again.clips[0].jpegs[:5] == work.clips[0].jpegs[:5]
    assert again.clips[0].truth == work.clips[0].truth


def test_hog_with_upsampling_finds_the_pasted_faces(work) -> None:  # type: ignore[no-untyped-def]
    result = measure_detector(work, hog_finder(1), frames_per_camera=5)
    assert result["frames"] == 10 and result["faces"] > 0
    assert result["recall"] >= 0.8
    assert result["ms_per_frame"] > 0


def test_centerface_at_half_size_finds_the_small_faces_hog_misses(work) -> None:  # type: ignore[no-untyped-def]
    cnn = measure_detector(work, centerface_finder(0.5), frames_per_camera=8)
    hog = measure_detector(work, hog_finder(0), frames_per_camera=8)
    assert cnn["faces"] == hog["faces"] > 0
    assert cnn["recall"] >= 0.95
    assert cnn["false_boxes"] <= 1
    small = "40-59px"
    if hog["recall_by_width"][small] is not None:
        assert cnn["recall_by_width"][small] > hog["recall_by_width"][small]


@pytest.mark.slow
def test_tracking_holds_on_real_footage_with_a_moving_background() -> None:
    """The detect stage on this workload: the background changes every frame, yet most
    frames are followed, not scanned, and the faces are still found."""
    from sauron.config import DetectConfig
    from sauron.detect.stage import DetectStage
    from sauron.detect.tracking import iou_matrix
    from sauron.types import Frame

    work = make_realistic_workload(cameras=2, frames=80)
    cfg = DetectConfig.model_validate({"embedder": "onnx"})
    stage = DetectStage(cfg, tracking=True, detect_every=5)
    found = total = 0
    for ci in range(len(work.clips)):
        for n in range(len(work.clips[ci])):
            det, _ = stage.process(Frame(f"cam{ci}", n, 0.0, work.jpeg(ci, n)))
            truth = np.array([box for _, box in work.people(ci, n)]).reshape(-1, 4)
            total += len(truth)
            if len(truth) and len(det):
                found += int((iou_matrix(truth, det.xyxy).max(axis=1) >= 0.3).sum())
    assert total > 100
    assert found / total >= 0.97
    assert stage.frames_followed > 2 * stage.frames_scanned
    assert stage.faces_embedded < 0.2 * stage.faces_seen


def test_a_late_name_counts_once_for_the_face_it_names() -> None:
    truth = ((WATCHED, (10, 10, 60, 60)), ("stranger-1", (100, 10, 150, 60)))
    boxes = np.array([[12, 11, 61, 60], [101, 10, 150, 59]])
    score = Score()
    score.add(truth, boxes, (None, None))
    assert (score.watched_named, score.strangers_named) == (0, 0)
    score.add_late(truth, boxes[[0]], (WATCHED,))
    score.add_late(truth, boxes[[1]], ("someone",))
    acc = score.to_json()
    assert (acc["watched_faces"], acc["watched_named"], acc["strangers_named"]) == (1, 1, 1)
    assert acc["faces"] == 2 and acc["detected"] == 2
