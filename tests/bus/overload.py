"""One overloaded ``sauron run``, shared by the Kafka and embedded-bus tests: four cameras
at 20 frames/s each into one detect process that scans every whole frame (a few times
more than it can take)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sauron.config import load_settings
from sauron.demo.synth import demo_clips
from sauron.pipeline import RunOptions, RunSummary, run

FRAMES = 160


@dataclass
class Overload:
    summary: RunSummary
    records: list[dict[str, Any]]
    cameras: int


def overload(tmp_path: Path, *, realtime: bool = True, **sections: Any) -> Overload:
    """The run, with ``sections`` (e.g. ``bus=``, ``topics=``) added to its settings."""
    clips = demo_clips(tmp_path / "clips", frames=FRAMES, fps=20)
    cameras = [
        {"name": f"{c.camera}{k}", "source": str(c.path), "realtime": realtime}
        for c in clips
        for k in range(2)
    ]
    detect = {"live_frame_age_s": 0.5, "input_scale": 1.0, "tracking": False, "detect_every": 1}
    settings = load_settings(None, {"cameras": cameras, "detect": detect, **sections})
    out = tmp_path / "results.jsonl"
    summary = run(settings, RunOptions(processes=1, until_done=True, results=out, timeout_s=200))
    records = [json.loads(line) for line in out.read_text().splitlines() if line]
    return Overload(summary, records, len(cameras))


def check_stayed_live(got: Overload) -> None:
    """Every frame is in the results file (in order, once) or counted as dropped, stale
    frames among the dropped, and each camera's frames of the second half of its stream
    were detected: the process stayed with the live edge instead of working through the
    first frames when the cameras ended."""
    summary, records = got.summary, got.records
    total = sum(summary.frames_in.values())
    assert total == FRAMES * got.cameras
    assert summary.dropped_stale > 0, "an overloaded worker must drop stale frames"
    # each frame delivered, dropped, or (counted) come after the file had moved past it
    assert len(records) + summary.dropped + summary.late == total
    for cam in summary.frames_in:
        frames = [r["frame"] for r in records if r["camera"] == cam]
        assert frames == sorted(set(frames)), f"{cam}: out of order or repeated"
        assert any(f >= FRAMES // 2 for f in frames), f"{cam}: no second half: {frames}"
