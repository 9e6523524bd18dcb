"""Start-up over a real Kafka broker: no frame waits for the group to form, each frame
comes out once, and frames older than the staleness bound are dropped and counted."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from sauron import pipeline
from sauron.config import load_settings
from sauron.demo.synth import ClipTruth
from sauron.pipeline import RunOptions, run

from .conftest import clip_settings
from .scoring import read_results

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_live_cameras_start_without_a_backlog(
    protocol: str,
    clips: list[ClipTruth],
    watchlist_dir: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """Three live cameras (real-time playback, two of them hashing to one partition)
    over two workers: the cameras start only once both workers are warm and hold every
    partition, so the first frame of each camera is out within a second; with either
    consumer group protocol."""
    cams = [(f"cam{i + 1}", clips[i % len(clips)]) for i in range(3)]
    settings = load_settings(
        None,
        {
            "cameras": [
                {"name": name, "source": str(clip.path), "realtime": True} for name, clip in cams
            ],
            "bus": {
                "type": "kafka",
                "bootstrap_servers": kafka_bootstrap,
                "group_protocol": protocol,
            },
            "topics": {"prefix": topic_prefix},
            "match": {"watchlist": str(watchlist_dir)},
            # every frame is checked below: none may be dropped as stale on a busy machine
            "detect": {"live_frame_age_s": None},
        },
    )
    out = tmp_path / "results.jsonl"
    summary = run(settings, RunOptions(processes=2, until_done=True, results=out, timeout_s=300))
    assert summary.ok
    records = read_results(out)
    seen = Counter((r["camera"], r["frame"]) for r in records)
    for name, clip in cams:
        got = sorted(n for (c, n) in seen if c == name)
        assert got == list(range(clip.frames)), f"{name}: frames missing"
    assert set(seen.values()) == {1}, "a frame came out twice"
    first = {r["camera"]: r["latency_ms"] for r in records if r["frame"] == 0}
    assert max(first.values()) < 1000, f"first frames waited: {first} ms"
    assert summary.ready_s is not None
    assert len(set(summary.placement.values())) == 3, "each camera on a partition of its own"
    per_member = sorted(
        sum(p in parts for p in summary.placement.values()) for parts in summary.members.values()
    )
    assert per_member == [1, 2], f"cameras per worker: {per_member}"
    assert summary.dropped == summary.dropped_stale == 0


def test_stale_frames_are_dropped_and_counted(
    clips: list[ClipTruth],
    watchlist_dir: Path,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files read as fast as possible with a staleness bound far below what a frame takes
    to reach a worker: every frame is dropped as stale, counted in the summary, and the
    run ends because every frame is accounted for (not by giving up on missing ones)."""
    monkeypatch.setattr(pipeline, "IDLE_FINISH_S", 10_000.0)
    settings = clip_settings(
        clips,
        watchlist_dir,
        bus={"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        topics={"prefix": topic_prefix, "partitions": 2},
        detect={"max_frame_age_s": 1e-4},
    )
    out = tmp_path / "results.jsonl"
    summary = run(settings, RunOptions(processes=1, until_done=True, results=out, timeout_s=300))
    total = sum(c.frames for c in clips)
    assert summary.frames_in == {c.camera: c.frames for c in clips}
    assert summary.dropped_stale == total
    assert summary.dropped == total
    assert read_results(out) == []
