"""The detect stage with tracking: few embeddings, few full scans, the same faces found."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sauron.bench.workload import Workload, make_workload
from sauron.config import DetectConfig
from sauron.detect.stage import DetectStage
from sauron.types import Frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip() -> Workload:
    return make_workload(clips=1, frames=30)


def run(stage: DetectStage, clip: Workload, frames: int, camera: str = "cam") -> list[set[int]]:
    """Ids of the tracks in each frame; every frame checked against the ground truth."""
    out = []
    for n in range(frames):
        det, timings = stage.process(Frame(camera, n, 0.0, clip.jpeg(0, n)))
        assert len(det) == len(clip.people(0, n)), f"frame {n}: faces found vs truth"
        assert {"decode", "detect", "embed"} <= set(timings)
        assert np.isfinite(det.embeddings).all(), f"frame {n}: a face without identity"
        out.append(set(det.track_ids.tolist()))
    return out


def cfg() -> DetectConfig:
    return DetectConfig.model_validate({"embedder": "onnx"})


def test_tracking_embeds_and_scans_a_fraction_of_the_frames(clip: Workload) -> None:
    stage = DetectStage(cfg(), tracking=True, detect_every=5)
    ids = run(stage, clip, 58)  # forwards then back: faces come and go
    assert stage.faces_embedded < 0.25 * stage.faces_seen
    assert stage.frames_followed > stage.frames_scanned
    assert stage.frames_scanned >= 58 // 5
    # a face present in consecutive frames keeps its track
    assert all(a & b for a, b in itertools.pairwise(ids) if a and b)


def test_detect_every_one_scans_every_frame(clip: Workload) -> None:
    stage = DetectStage(cfg(), tracking=True, detect_every=1)
    run(stage, clip, 12)
    assert stage.frames_scanned == 12
    assert stage.frames_followed == 0


def test_detect_every_comes_from_the_config(clip: Workload) -> None:
    assert DetectStage(cfg(), tracking=True).detect_every == 5  # the default
    conf = DetectConfig.model_validate({"embedder": "onnx", "detect_every": 1})
    stage = DetectStage(conf, tracking=True)
    run(stage, clip, 6)
    assert stage.frames_scanned == 6 and stage.frames_followed == 0


def test_cameras_take_turns_at_full_scans(clip: Workload) -> None:
    """Cameras started together do not all scan the same round: after the first frame a
    worker's scans are spread over the rounds (a steady load, a shorter latency tail)."""
    stage = DetectStage(cfg(), tracking=True, detect_every=5)
    cameras = [f"cam{i}" for i in range(5)]
    jpeg = clip.jpeg(0, 0)  # a still picture: only the schedule triggers scans
    per_round = []
    for n in range(16):
        before = stage.frames_scanned
        for cam in cameras:
            stage.process(Frame(cam, n, 0.0, jpeg))
        per_round.append(stage.frames_scanned - before)
    assert per_round[0] == 5  # every camera's first frame is scanned
    assert max(per_round[1:]) == 1, per_round  # then one camera a round
    assert sum(per_round[1:]) == 15 * 5 // 5


def test_per_frame_mode_embeds_every_face(clip: Workload) -> None:
    stage = DetectStage(cfg(), tracking=False)
    run(stage, clip, 6)
    assert stage.faces_embedded == stage.faces_seen > 0
    assert stage.frames_scanned == 6


def test_track_ids_differ_between_stages(clip: Workload) -> None:
    a = run(DetectStage(cfg(), tracking=True), clip, 1)
    b = run(DetectStage(cfg(), tracking=True), clip, 1)
    assert a[0] and b[0] and not a[0] & b[0]
    assert max(a[0] | b[0]) < 2**53  # exact as a JSON number anywhere


def test_tracking_holds_on_real_footage_with_a_moving_background() -> None:
    """Faces over real pedestrian footage: the background changes every frame, yet most
    frames are followed, not scanned, and the faces are still found."""
    from sauron.bench.realistic import make_realistic_workload
    from sauron.detect.tracking import iou_matrix

    work = make_realistic_workload(cameras=2, frames=80)
    stage = DetectStage(cfg(), tracking=True, detect_every=5)
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
