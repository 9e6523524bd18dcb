"""``sauron bench pipeline``: its pieces, and a smoke-size run end to end over real Kafka."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from sauron_bench.bare_loop import agreement
from sauron_bench.measure import Record, Usage, percentiles, stage_means, summarize, throughput
from sauron_bench.pipeline_command import main
from sauron_bench.workload import Clip, camera_names


def test_camera_names_spread_evenly_over_partitions() -> None:
    names = camera_names(8, 4)
    assert len(set(names)) == 8
    parts = [zlib.crc32(n.encode()) % 4 for n in names]
    assert sorted(parts) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_clips_play_forwards_then_backwards() -> None:
    clip = Clip(tuple(bytes([i]) for i in range(4)), ((),) * 4)
    assert [clip.index(n) for n in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]


def test_percentiles_throughput_and_stage_means() -> None:
    records = [
        Record("c", i, 10.0 + i, 10.0 + i + (i + 1) / 1000, {"detect": float(i)})
        for i in range(100)
    ]
    p = percentiles(r.latency_ms for r in records)
    assert p["p1"] <= p["p25"] <= p["p50"] <= p["p75"] <= p["p95"] <= p["p99"] <= p["max"]
    assert p["p50"] == pytest.approx(50.5, abs=0.1)
    fps, span = throughput(records)
    assert span == pytest.approx(99.099, abs=1e-6)
    assert fps == pytest.approx(99 / span)
    means = stage_means(records)
    assert means["detect"] == pytest.approx(49.5)
    assert means["transport"] == pytest.approx(50.5 - 49.5, abs=0.01)
    assert percentiles([]) == {}


def test_paced_latency_leaves_out_the_warmup_and_reports_it_apart() -> None:
    # 4 s of frames at 10/s: 500 ms late in the first second, 20 ms after it
    records = [
        Record("c", i, 100.0 + i / 10, 100.0 + i / 10 + (0.5 if i < 10 else 0.02), {})
        for i in range(40)
    ]
    usage = Usage(wall_s=4.0, cpu_s={"bench": 1.0}, peak_rss_mb={"bench": 1.0})
    kw: dict[str, Any] = {
        "workers": 1,
        "mode": "paced",
        "tracking": True,
        "embedder": "onnx",
        "cameras": 1,
    }
    whole = summarize("p", records, usage, **kw)
    steady = summarize("p", records, usage, warmup_s=1.0, **kw)
    assert whole.latency_ms["p99"] == pytest.approx(500, abs=0.1)
    assert steady.latency_ms["max"] == pytest.approx(20, abs=0.1)
    assert steady.extra["latency_first_s_ms"]["p50"] == pytest.approx(500, abs=0.1)
    assert steady.extra["latency_all_frames_ms"] == whole.latency_ms
    assert steady.frames == whole.frames == 40  # the rate still counts every frame


def test_agreement_counts_frames_with_the_same_names() -> None:
    a = {("c", 0): ("", "ann"), ("c", 1): ("ann",), ("c", 2): ()}
    b = {("c", 0): ("", "ann"), ("c", 1): ("", "ann"), ("c", 2): ("bob",)}
    got = agreement(a, b)
    assert got["frames"] == 3
    assert got["names"] == pytest.approx(1 / 3, abs=1e-3)
    assert got["watched"] == pytest.approx(2 / 3, abs=1e-3)


def _positive_by_workers(table: dict[str, Any]) -> None:
    assert table, "no worker counts"
    for workers, value in table.items():
        assert int(workers) >= 1
        assert value > 0


@pytest.mark.slow
@pytest.mark.kafka
def test_quick_run_writes_consistent_json_and_a_figure(tmp_path: Path) -> None:
    argv = ["--quick", "--out", str(tmp_path)]
    if os.environ.get("SAURON_TEST_BOOTSTRAP"):
        argv += ["--bootstrap", os.environ["SAURON_TEST_BOOTSTRAP"]]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "pipeline.json").read_text())
    assert doc["failed_runs"] == []
    assert doc["floor_fps"] > 0 and doc["floor_per_frame_fps"] > 0
    _positive_by_workers(doc["pipeline_fps"])
    _positive_by_workers(doc["embedded_fps"])
    assert doc["seed_baseline_fps"] > 0
    assert doc["seed_ratio"] == pytest.approx(
        doc["pipeline_fps"]["1"] / doc["seed_baseline_fps"], abs=0.01
    )
    assert doc["tracking_speedup"] == pytest.approx(
        doc["floor_fps"] / doc["floor_per_frame_fps"], abs=0.01
    )
    assert doc["latency_ms"]
    for lat in doc["latency_ms"].values():
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert doc["latency_warmup_s"] == 1.0
    assert set(doc["latency_first_seconds_ms"]) == set(doc["latency_ms"])
    _positive_by_workers(doc["separate_match_fps"])  # the match stage as a group of its own
    assert doc["render_ms"] > 0
    assert doc["wire"]["frame_message_bytes"] < doc["wire"]["seed_frame_message_bytes"]
    for run in doc["runs"]:
        assert run["frames"] > 0 and run["fps"] > 0, run["name"]
        assert all(v >= 0 for k, v in run["stages_ms"].items() if k != "transport")
        assert run["cpu"]["cores_used"] > 0
        assert run["peak_rss_mb"]["bench"] > 0
        if run["mode"] == "flood" and run["name"] != "floor" and "sent" in run["extra"]:
            assert run["extra"]["undelivered"] == 0, run["name"]
    assert {t["target"] for t in doc["targets"]} >= {
        "pipeline (kafka), 1 worker, vs the floor",
        "tracking vs per-frame embedding (floor)",
    }
    assert doc["workload"]["kind"] == "realistic"
    assert 0 < doc["detection_recall"] <= 1 and 0 <= doc["id_recall"] <= 1
    assert doc["false_ids"] >= 0 and doc["fps_per_core"] > 0
    assert doc["baseline"]["fps"] > 0
    assert (tmp_path / "pipeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_no_waste_one_decode_per_stage_and_compact_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 6 of the speed issue: each stage decodes a frame's JPEG once at most, and the
    wire carries the JPEG as is plus float32 embeddings (512 bytes a face), no pixels. A
    matcher that does not draw decodes only the frames where a fresh embedding votes (the
    sharpness of the faces that vote), once."""
    import sauron.detect.stage as detect_stage
    import sauron.match.stage as match_stage
    from sauron import codec
    from sauron.config import DetectConfig, MatchConfig
    from sauron.match.watchlist import Watchlist
    from sauron.types import Frame
    from sauron_bench.workload import make_workload

    calls = {"detect": 0, "match": 0}

    def counting(stage: str, real: Any) -> Any:
        def decode(data: bytes) -> Any:
            calls[stage] += 1
            return real(data)

        return decode

    monkeypatch.setattr(detect_stage, "decode_jpeg", counting("detect", detect_stage.decode_jpeg))
    monkeypatch.setattr(match_stage, "decode_jpeg", counting("match", match_stage.decode_jpeg))
    work = make_workload(clips=1, frames=8)
    detect = detect_stage.DetectStage(DetectConfig.model_validate({"embedder": "onnx"}))
    drawing = match_stage.MatchStage(MatchConfig.model_validate({"draw": True}), Watchlist())
    match = match_stage.MatchStage(MatchConfig.model_validate({}), Watchlist())
    voted: list[int] = []
    for n in range(8):
        frame = Frame("cam", n, 0.0, work.jpeg(0, n))
        det, timings = detect.process(frame)
        before = calls["match"]
        drawing.process(frame, det, timings)  # decodes the frame to draw on it (and vote)
        assert calls["match"] == before + 1
        result, _ = match.process(frame, det, timings)  # the default: no drawing
        voted.append(calls["match"] - before - 1)
        assert result.annotated_jpeg == b"" and result.frame.jpeg == frame.jpeg
        faces = len(det)
        assert faces >= 1
        detections = codec.encode_detections(frame, det, timings)
        overhead = len(detections) - len(frame.jpeg)
        assert overhead < 1024 + faces * (128 * 4 + 200), overhead
        assert len(codec.encode_result(result)) < len(frame.jpeg) + 1024 + faces * (128 * 4 + 200)
    assert calls["detect"] == 8
    assert set(voted) <= {0, 1} and voted[0] == 1, voted  # the first frame's faces are new
    assert sum(voted) < 8, "frames that only carry embeddings are not decoded"
    assert calls["match"] == 8 + sum(voted)
