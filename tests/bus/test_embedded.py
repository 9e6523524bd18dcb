"""The embedded bus stays live like the Kafka path: a live camera's frames that would be
detected too late are dropped as stale and counted, never delivered seconds late."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sauron.config import load_settings
from sauron.demo.synth import demo_clips
from sauron.pipeline import RunOptions, run


def _results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _overload(tmp_path: Path, realtime: bool) -> dict[str, Any]:
    """Four cameras at 20 frames/s each into one detect process that scans every whole
    frame: a few times more than it can take."""
    clips = demo_clips(tmp_path / "clips", frames=160, fps=20)
    cameras = [
        {"name": f"{c.camera}{k}", "source": str(c.path), "realtime": realtime}
        for c in clips
        for k in range(2)
    ]
    settings = load_settings(
        None,
        {
            "cameras": cameras,
            "detect": {
                "live_frame_age_s": 0.5,
                "input_scale": 1.0,
                "tracking": False,
                "detect_every": 1,
            },
        },
    )
    out = tmp_path / "results.jsonl"
    summary = run(settings, RunOptions(processes=1, until_done=True, results=out, timeout_s=200))
    return {"summary": summary, "records": _results(out), "cameras": len(cameras)}


@pytest.mark.timeout(240)
def test_an_overloaded_embedded_run_drops_stale_frames_instead_of_falling_behind(
    tmp_path: Path,
) -> None:
    """Every frame is either in the results file (in order, once) or counted as dropped,
    stale frames among them; the process keeps up with the cameras (frames of each
    stream's second half are detected) and no frame comes out seconds late."""
    run_ = _overload(tmp_path, realtime=True)
    summary, records = run_["summary"], run_["records"]
    total = sum(summary.frames_in.values())
    assert total == 160 * run_["cameras"]
    assert summary.dropped_stale > 0, "an overloaded process must drop stale frames"
    assert summary.dropped >= summary.dropped_stale
    assert summary.lost == 0
    assert len(records) + summary.dropped == total  # each frame delivered or dropped
    for cam in summary.frames_in:
        frames = [r["frame"] for r in records if r["camera"] == cam]
        assert frames == sorted(set(frames)), f"{cam}: out of order or repeated"
        assert any(f >= 80 for f in frames), f"{cam}: nothing of the second half: {frames}"
    # without the age limit, the last frames came out about 10 s after their capture
    late = max(r["latency_ms"] for r in records)
    assert late < 5000, f"a frame came out {late:.0f} ms after its capture"


@pytest.mark.timeout(240)
def test_files_read_as_fast_as_possible_are_never_dropped(tmp_path: Path) -> None:
    """The same overload from cameras that are files read as fast as possible: they wait
    for room, and every frame comes out."""
    run_ = _overload(tmp_path, realtime=False)
    summary, records = run_["summary"], run_["records"]
    assert summary.dropped == summary.dropped_stale == 0
    assert len(records) == sum(summary.frames_in.values()) == 160 * run_["cameras"]
