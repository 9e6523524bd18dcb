"""Synthetic footage: rendered, read back, deterministic, and its faces are findable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import dlib
import numpy as np
import pytest

from sauron.demo.samples import sample_photos
from sauron.demo.synth import (
    WATCHED,
    ClipTruth,
    Walker,
    demo_clips,
    load_truth,
    render_clip,
    save_truth,
)
from sauron.imaging import bgr_to_rgb
from sauron.ingest.sources import SourceOptions, open_source

FRAMES = 30


def _walkers() -> list[Walker]:
    photos = sample_photos()
    return [
        Walker("obama", photos["obama.jpg"], 0, 20, (0.25, 0.4), (0.3, 0.45), 0.15, 0.22),
        Walker("biden", photos["biden.jpg"], 12, 30, (0.78, 0.42), (0.7, 0.45), 0.2, 0.16),
    ]


def _render(path: Path, seed: int = 3) -> ClipTruth:
    return render_clip(path, _walkers(), frames=FRAMES, fps=10, seed=seed)


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipTruth:
    return _render(tmp_path_factory.mktemp("synth") / "cam.mp4")


def test_render_and_read_back(clip: ClipTruth) -> None:
    assert (clip.camera, clip.frames, clip.fps, clip.width, clip.height) == (
        "cam",
        FRAMES,
        10.0,
        640,
        360,
    )
    assert clip.path.suffix == ".mp4" and clip.path.stat().st_size > 0
    assert len(clip.people) == FRAMES
    assert clip.frames_with("obama") == list(range(20))
    assert clip.frames_with("biden") == list(range(12, 30))
    for row in clip.people:
        for _, (x0, y0, x1, y1) in row:
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
            assert 85 <= x1 - x0 <= 160  # within dlib HOG's range without upsampling
    src = open_source(str(clip.path), SourceOptions(realtime=False))
    frames = list(src.frames())
    src.close()
    assert len(frames) == FRAMES and frames[0].shape == (360, 640, 3)
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 10
        assert stream.codec_context.name in {"h264", "mpeg4"}


def test_deterministic_for_a_seed(clip: ClipTruth, tmp_path: Path) -> None:
    again = _render(tmp_path / "cam.mp4")
    assert dataclasses.replace(again, path=clip.path) == clip
    a, b = _decode(clip.path), _decode(again.path)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = _render(tmp_path / "other.mp4", seed=4)
    assert other.people == clip.people  # the walkers do not depend on the seed...
    assert not np.array_equal(_decode(other.path)[0], a[0])  # ...the background does


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def test_dlib_hog_finds_the_faces(clip: ClipTruth) -> None:
    detector = dlib.get_frontal_face_detector()
    found = total = 0
    for frame, truth in zip(_decode(clip.path), clip.people, strict=True):
        if not truth:
            continue
        rects = detector(bgr_to_rgb(frame), 0)
        boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
        for _, box in truth:
            total += 1
            found += any(_iou(box, d) > 0.3 for d in boxes)
    assert total > 0 and found / total >= 0.8, f"{found}/{total}"


def test_truth_json_round_trip(clip: ClipTruth, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "truth.json"
    save_truth([clip], path)
    assert load_truth(path) == [clip]


def test_demo_clips(tmp_path: Path) -> None:
    truths = demo_clips(tmp_path / "demo", frames=20)
    assert len({t.camera for t in truths}) >= 2
    for t in truths:
        assert t.path.exists() and t.frames == 20 and len(t.people) == 20
        assert t.frames_with(WATCHED), t.camera
        strangers = {p for row in t.people for p, _ in row} - {WATCHED}
        assert strangers, t.camera
    save_truth(truths, tmp_path / "demo" / "truth.json")
    assert load_truth(tmp_path / "demo" / "truth.json") == truths
