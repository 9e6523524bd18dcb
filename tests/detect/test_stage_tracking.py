"""The detect stage with tracking: few embeddings, few full scans, the same faces found."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sauron.config import DetectConfig
from sauron.demo.samples import astronaut_photo, sample_photos
from sauron.demo.synth import Walker, render_clip
from sauron.detect.stage import DetectStage
from sauron.imaging import encode_jpeg
from sauron.ingest.sources import SourceOptions, open_source
from sauron.types import Box, Frame

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Clip:
    """One camera's frames (JPEG, as a camera sends them) and who is where in each,
    replayed forwards then backwards so a camera runs for any number of frames."""

    jpegs: tuple[bytes, ...]
    truth: tuple[tuple[tuple[str, Box], ...], ...]

    def _index(self, number: int) -> int:
        period = 2 * len(self.jpegs) - 2
        i = number % period
        return i if i < len(self.jpegs) else period - i

    def jpeg(self, number: int) -> bytes:
        return self.jpegs[self._index(number)]

    def people(self, number: int) -> tuple[tuple[str, Box], ...]:
        return self.truth[self._index(number)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """30 frames, 640x360: one person throughout, one leaving part-way, one arriving."""
    photos, n = sample_photos(), 30
    walkers = [
        Walker("obama", photos["obama2.jpg"], 0, n, (0.2, 0.42), (0.24, 0.45), 0.15, 0.18),
        Walker("biden", photos["biden.jpg"], 0, 18, (0.5, 0.44), (0.53, 0.4), 0.17, 0.19),
        Walker("astronaut", astronaut_photo(), 12, n, (0.8, 0.4), (0.77, 0.44), 0.16, 0.19),
    ]
    path = Path(tmp_path_factory.mktemp("clip")) / "cam.mp4"
    truth = render_clip(path, walkers, frames=n, seed=100)
    source = open_source(str(path), SourceOptions(max_width=640, realtime=False))
    try:
        jpegs = tuple(encode_jpeg(bgr, 85) for bgr in source.frames())
    finally:
        source.close()
    assert len(jpegs) == n
    return Clip(jpegs, tuple(tuple(row) for row in truth.people))


def run(stage: DetectStage, clip: Clip, frames: int, camera: str = "cam") -> list[set[int]]:
    """Ids of the tracks in each frame; every frame checked against the ground truth."""
    out = []
    for n in range(frames):
        det, timings = stage.process(Frame(camera, n, 0.0, clip.jpeg(n)))
        assert len(det) == len(clip.people(n)), f"frame {n}: faces found vs truth"
        assert {"decode", "detect", "embed"} <= set(timings)
        assert np.isfinite(det.embeddings).all(), f"frame {n}: a face without identity"
        out.append(set(det.track_ids.tolist()))
    return out


def cfg() -> DetectConfig:
    return DetectConfig.model_validate({"embedder": "onnx"})


def test_tracking_embeds_and_scans_a_fraction_of_the_frames(clip: Clip) -> None:
    stage = DetectStage(cfg(), tracking=True, detect_every=5)
    ids = run(stage, clip, 58)  # forwards then back: faces come and go
    assert stage.faces_embedded < 0.25 * stage.faces_seen
    assert stage.frames_followed > stage.frames_scanned
    assert stage.frames_scanned >= 58 // 5
    # a face present in consecutive frames keeps its track
    assert all(a & b for a, b in itertools.pairwise(ids) if a and b)


def test_detect_every_one_scans_every_frame(clip: Clip) -> None:
    stage = DetectStage(cfg(), tracking=True, detect_every=1)
    run(stage, clip, 12)
    assert stage.frames_scanned == 12
    assert stage.frames_followed == 0


def test_detect_every_comes_from_the_config(clip: Clip) -> None:
    assert DetectStage(cfg(), tracking=True).detect_every == 5  # the default
    conf = DetectConfig.model_validate({"embedder": "onnx", "detect_every": 1})
    stage = DetectStage(conf, tracking=True)
    run(stage, clip, 6)
    assert stage.frames_scanned == 6 and stage.frames_followed == 0


def test_cameras_take_turns_at_full_scans(clip: Clip) -> None:
    """Cameras started together do not all scan the same round: after the first frame a
    worker's scans are spread over the rounds (a steady load, a shorter latency tail)."""
    stage = DetectStage(cfg(), tracking=True, detect_every=5)
    cameras = [f"cam{i}" for i in range(5)]
    jpeg = clip.jpeg(0)  # a still picture: only the schedule triggers scans
    per_round = []
    for n in range(16):
        before = stage.frames_scanned
        for cam in cameras:
            stage.process(Frame(cam, n, 0.0, jpeg))
        per_round.append(stage.frames_scanned - before)
    assert per_round[0] == 5  # every camera's first frame is scanned
    assert max(per_round[1:]) == 1, per_round  # then one camera a round
    assert sum(per_round[1:]) == 15 * 5 // 5


def test_per_frame_mode_embeds_every_face(clip: Clip) -> None:
    stage = DetectStage(cfg(), tracking=False)
    run(stage, clip, 6)
    assert stage.faces_embedded == stage.faces_seen > 0
    assert stage.frames_scanned == 6


def test_track_ids_differ_between_stages(clip: Clip) -> None:
    a = run(DetectStage(cfg(), tracking=True), clip, 1)
    b = run(DetectStage(cfg(), tracking=True), clip, 1)
    assert a[0] and b[0] and not a[0] & b[0]
    assert max(a[0] | b[0]) < 2**53  # exact as a JSON number anywhere
