"""``sauron bench scale``: the knee, and a tiny run end to end over the embedded bus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sauron_bench.scale import knees, main


def _run(bus: str, cameras: int, p99: float, drop: float, joined: int = 0) -> dict[str, Any]:
    return {
        "bus": bus,
        "workers": 2,
        "joined": joined,
        "cameras": cameras,
        "latency_ms": {"p99": p99},
        "drop_share": drop,
    }


def test_the_knee_is_the_most_cameras_within_the_bound() -> None:
    runs = [
        _run("kafka", 4, 120.0, 0.0),
        _run("kafka", 8, 290.0, 0.005),
        _run("kafka", 16, 310.0, 0.0),  # too slow
        _run("kafka", 24, 280.0, 0.4),  # fast only because it dropped most frames
        _run("embedded", 4, 400.0, 0.0),
        _run("kafka", 8, 100.0, 0.0, joined=1),
    ]
    assert knees(runs, 300.0) == {"kafka/2": 8, "embedded/2": 0, "kafka/2+1": 8}


@pytest.mark.timeout(300)
def test_a_tiny_run_writes_the_json_and_the_figure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--cameras", "1,2", "--buses", "embedded", "--workers", "1", "--seconds", "2"]
    assert main([*argv, "--clips", "1", "--keep-results", "--out", str(out)]) == 0
    doc = json.loads((out / "scale.json").read_text())
    assert (out / "scale.png").stat().st_size > 0
    assert [r["cameras"] for r in doc["runs"]] == [1, 2]
    for r in doc["runs"]:
        assert r["frames_in"] == 10 * r["cameras"]
        assert r["frames_out"] + r["dropped"] + r["unaccounted"] == r["frames_in"]
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
        assert r["cpu_percent"]["run"] > 0
        assert r["broker_bytes_per_frame"] is None
        # per second of capture time, every frame that came out once
        assert sum(t["n"] for t in r["timeline"]) == r["frames_out"]
        assert max(t["max"] for t in r["timeline"]) == r["latency_ms"]["max"]
        assert r["latency_ms_settled"] == {}  # a 2-s clip has nothing past the first 5 s
        kept = out / "results" / f"embedded-1-{r['cameras']}.jsonl"
        assert len(kept.read_text().splitlines()) == r["frames_out"]
    assert set(doc["knee_cameras"]) == {"embedded/1"}
    assert doc["live_frame_age_s"] == 1.0
