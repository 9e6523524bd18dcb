"""``sauron bench startup``: its summary, and a tiny cold run end to end over real Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sauron_bench.startup import join_summary, latency_summary, main, table


def test_latency_is_summarised_from_the_first_frame_and_split() -> None:
    records = [
        {"camera": c, "frame": n, "ts": 100.0 + n / 10, "latency_ms": 500.0 if n == 0 else 20.0}
        for c in ("a", "b")
        for n in range(50)
    ]
    s = latency_summary(records, first_s=1.0)
    assert s["first_frame_ms"] == {"a": 500.0, "b": 500.0}
    assert s["all_frames_ms"]["max"] == 500.0
    assert s["first_seconds_ms"]["max"] == 500.0  # frames 0-9 of each camera
    assert s["after_first_ms"]["max"] == 20.0  # the warmed-up figure leaves them out
    assert latency_summary([], 3.0)["all_frames_ms"] == {}


def test_the_join_summary_counts_the_frames_captured_from_the_join_on() -> None:
    records = [
        {"camera": c, "frame": n, "ts": 100.0 + n / 10, "latency_ms": 900.0 if n == 30 else 30.0}
        for c in ("a", "b")
        for n in range(50)
    ]
    s = join_summary(records, joined_at=102.0)
    assert s["join_after_s"] == 2.0
    assert s["after_join_ms"]["max"] == 900.0
    assert s["worst_after_join_ms"] == {"a": 900.0, "b": 900.0}
    assert join_summary(records, joined_at=104.5)["after_join_ms"]["max"] == 30.0


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_a_worker_joining_a_running_group_loses_no_frame(
    kafka_bootstrap: str, tmp_path: Path, protocol: str
) -> None:
    argv = ["--bootstrap", kafka_bootstrap, "--cameras", "2", "--workers", "1"]
    argv += ["--group-protocol", protocol, "--seconds", "10", "--join-after", "1"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    (run,) = json.loads((tmp_path / "startup.json").read_text())["runs"]
    assert run["group_protocol"] == protocol
    assert run["frames_in"] == run["frames_out"] == 200
    assert run["repeated"] == 0
    assert run["join_after_s"] >= 0.5
    assert run["after_join_ms"]["p50"] > 0
    assert set(run["worst_after_join_ms"]) == {"cam1", "cam2"}


@pytest.mark.slow
@pytest.mark.kafka
def test_a_tiny_cold_run_writes_every_frame_and_the_json(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--bootstrap", kafka_bootstrap, "--cameras", "2", "--workers", "1"]
    assert main([*argv, "--seconds", "2", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "startup.json").read_text())
    (run,) = doc["runs"]
    assert run["frames_in"] == run["frames_out"] == 40
    assert run["repeated"] == 0
    assert sorted(run["camera_partitions"]) == ["cam1", "cam2"]
    assert len(set(run["camera_partitions"].values())) == 2
    assert set(run["first_frame_ms"]) == {"cam1", "cam2"}
    assert run["all_frames_ms"]["p50"] > 0
    assert table(doc["runs"]) in capsys.readouterr().out
