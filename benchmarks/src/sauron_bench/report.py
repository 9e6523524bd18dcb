"""The benchmark's JSON document, its targets, a text table and the figure."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sauron import codec
from sauron.imaging import decode_jpeg
from sauron.types import Frame
from sauron_bench.seed_pipeline import np_to_json

if TYPE_CHECKING:
    from sauron_bench.pipeline_runs import Bench

log = logging.getLogger(__name__)

SEED_FPS_PER_PROCESS = 2.0  # the seed's figure: 8 consumer processes gave 16 FPS


def _by_workers(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return {str(r["workers"]): r for r in runs if r["name"] == name}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _wire(bench: Bench) -> dict[str, Any]:
    """Message sizes of one frame: the envelope against the seed's base64 JSON."""
    assert bench.workload is not None
    jpegs = [bench.workload.jpeg(0, n) for n in range(0, len(bench.workload.clips[0]), 5)]
    ours = [len(codec.encode_frame(Frame("cam", 0, 0.0, j))) for j in jpegs]
    seed = len(
        json.dumps({"camera": "cam", "number": 0, "ts": 0.0, **np_to_json(decode_jpeg(jpegs[0]))})
    )
    return {
        "frame_message_bytes": int(np.mean(ours)),
        "seed_frame_message_bytes": seed,
        "embedding_bytes_per_face": 128 * 4,
        "seed_embedding_bytes_per_face": len(json.dumps([0.123456789] * 128)),
    }


def _truth_figures(accuracy: dict[str, Any]) -> dict[str, Any]:
    faces, watched = accuracy["faces"], accuracy["watched_faces"]
    return {
        "detection_recall": round(accuracy["detected"] / faces, 4) if faces else None,
        "id_recall": round(accuracy["watched_named"] / watched, 4) if watched else None,
        "false_ids": accuracy["strangers_named"],
    }


def detection_figures(bench: Bench) -> dict[str, Any]:
    """Faces found, the watched person named right and strangers named, on the floor with
    the defaults (tracking on), the pipeline's frames/s per core, and the same for the
    bare one-core baseline loop when it ran."""
    out = _truth_figures(bench.floor_track.result.extra["accuracy"])
    embedded = {r.workers: r.fps for r in bench.runs if r.name == "embedded"}
    kafka = {r.workers: r.fps for r in bench.runs if r.name == "kafka"}
    best = kafka or embedded
    if best:  # the best rate per worker process (each one a core) of the pipeline runs
        w = max(best, key=lambda k: best[k] / k)
        out["fps_per_core"] = round(best[w] / w, 2)
        out["fps_per_core_from"] = f"{'kafka' if kafka else 'embedded'}, {w} worker(s)"
    else:
        out["fps_per_core"] = bench.floor_track.result.fps
        out["fps_per_core_from"] = "floor"
    if bench.baseline is not None:
        base = bench.baseline
        out["baseline"] = {"fps": base.fps, **_truth_figures(base.extra["accuracy"])}
        out["fps_per_core_vs_baseline"] = _ratio(out["fps_per_core"], base.fps)
    return out


def _target(
    name: str, goal: str, measured: Any, reached: bool | None, note: str = ""
) -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": measured, "reached": reached, "note": note}


def _targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    bus = doc["pipeline_bus"]
    out = []
    fps, floor = doc["pipeline_fps"], doc["floor_fps"]
    one = fps.get("1")
    if one:
        share = round(one / floor, 3)
        out.append(
            _target(
                f"pipeline ({bus}), 1 worker, vs the floor",
                ">= 0.90 of floor frames/s",
                share,
                share >= 0.9,
            )
        )
        per_core = round(one / SEED_FPS_PER_PROCESS, 1)
        out.append(
            _target(
                "per core vs the seed's 2 FPS per process",
                ">= 10x (an order of magnitude)",
                per_core,
                per_core >= 10,
                "640x360 frames here, 400-px frames in the seed",
            )
        )
    if one and fps.get("2"):
        scale = round(fps["2"] / one, 2)
        out.append(_target(f"2 workers vs 1 worker ({bus})", ">= 1.8x", scale, scale >= 1.8))
    for w, ratio in doc.get("seed_ratio_same_mode", {}).items():
        out.append(
            _target(
                f"per-frame pipeline vs the seed's way, {w} worker(s), same run",
                "reported",
                ratio,
                None,
                "both embed every face of every frame: the wire format and flush/commit",
            )
        )
    if doc.get("seed_ratio"):
        out.append(
            _target(
                "pipeline vs the seed's way, 1 worker, same run",
                "reported",
                doc["seed_ratio"],
                None,
            )
        )
    speed = doc.get("tracking_speedup")
    if speed:
        out.append(_target("tracking vs per-frame embedding (floor)", ">= 3x", speed, speed >= 3))
        agree = doc["tracking"][doc["embedder"]]["agreement"]["names"]
        out.append(
            _target("same names as per-frame embedding", ">= 98% of frames", agree, agree >= 0.98)
        )
    dlib = doc.get("tracking", {}).get("dlib")
    if dlib:
        out.append(
            _target(
                "tracking vs per-frame, dlib embedder",
                ">= 3x",
                dlib["speedup"],
                dlib["speedup"] is not None and dlib["speedup"] >= 3,
            )
        )
    load = doc["options"]["load"]
    rows = [(bus, doc["latency_ms"].get(str(doc["workers_max"])))]
    if doc.get("latency_separate_match_ms"):
        rows.append(("kafka, separate match worker", doc["latency_separate_match_ms"]))
    for bus, lat in rows:
        if not lat:
            continue
        for q, goal in (("p50", 100), ("p99", 300)):
            out.append(
                _target(
                    f"latency {q} at {load:.0%} load, {bus}",
                    f"<= {goal} ms",
                    lat[q],
                    lat[q] <= goal,
                )
            )
    return out


def assemble(bench: Bench) -> dict[str, Any]:
    """The JSON document of a run (field names are the benchmark's contract)."""
    runs = [r.to_json() for r in bench.runs]
    kafka = _by_workers(runs, "kafka")
    embedded = _by_workers(runs, "embedded")
    seed = _by_workers(runs, "seed")
    main = kafka or embedded
    pipeline_fps = {w: r["fps"] for w, r in main.items()}
    paced = _by_workers(runs, "kafka-paced") or _by_workers(runs, "embedded-paced")
    track = bench.out["tracking"][bench.embedder]
    assert bench.workload is not None
    doc: dict[str, Any] = {
        "version": 1,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(bench.args).items()},
        "machine": bench.out["machine"],
        "seconds": bench.out.get("seconds"),
        "embedder": bench.embedder,
        "workers_max": bench.wmax,
        "workload": {
            "cameras": len(bench.cameras),
            "size": [bench.workload.width, bench.workload.height],
            "clips": len(bench.workload.clips),
            "clip_frames": len(bench.workload.clips[0]),
            "kind": bench.args.workload,
            "faces_per_frame": round(bench.workload.faces_per_frame, 2),
        },
        "pipeline_bus": "kafka" if kafka else "embedded",
        "floor_fps": bench.floor_track.result.fps,
        "floor_per_frame_fps": bench.floor_per.result.fps,
        "pipeline_fps": pipeline_fps,
        "embedded_fps": {w: r["fps"] for w, r in embedded.items()},
        "separate_match_fps": {
            w: r["fps"] for w, r in _by_workers(runs, "kafka-separate-match").items()
        },
        "per_frame_pipeline_fps": {
            w: r["fps"] for w, r in _by_workers(runs, "kafka-per-frame").items()
        },
        "seed_baseline_fps": seed["1"]["fps"] if "1" in seed else None,
        "seed_fps": {w: r["fps"] for w, r in seed.items()},
        "seed_ratio": _ratio(pipeline_fps.get("1"), seed["1"]["fps"] if "1" in seed else None),
        "seed_ratio_same_mode": {
            w: _ratio(r["fps"], seed[w]["fps"])
            for w, r in _by_workers(runs, "kafka-per-frame").items()
            if w in seed
        },
        "tracking_speedup": track["speedup"],
        **detection_figures(bench),
        "tracking": bench.out["tracking"],
        "render_ms": bench.floor_track.result.extra.get("render_ms"),
        "latency_ms": {
            w: {k: r["latency_ms"].get(k) for k in ("p50", "p95", "p99")} for w, r in paced.items()
        },
        "latency_warmup_s": doc_warmup(paced),
        "latency_first_seconds_ms": {
            w: {k: r["extra"].get("latency_first_s_ms", {}).get(k) for k in ("p50", "p99", "max")}
            for w, r in paced.items()
        },
        "latency_separate_match_ms": {
            k: r["latency_ms"].get(k)
            for k in ("p50", "p95", "p99")
            for r in _by_workers(runs, "kafka-paced-separate-match").values()
        },
        "paced": bench.out.get("paced", {}),
        "wire": _wire(bench),
        "failed_runs": bench.out.get("failed_runs", []),
        "runs": runs,
    }
    doc["targets"] = _targets(doc)
    return doc


def doc_warmup(paced: dict[str, dict[str, Any]]) -> float | None:
    """The seconds at the start of the paced runs left out of their latency percentiles."""
    return next((r["extra"].get("warmup_s") for r in paced.values()), None)


# ---- text ------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(doc: dict[str, Any]) -> str:
    """Markdown tables: every run, then the targets."""
    head = (
        "| run | workers | mode | cameras | frames | frames/s | p50 ms | p95 ms | p99 ms "
        "| decode | detect | embed | match | draw | transport | cores used "
        "| CPU ms/frame (all / workers) | peak RSS MB (worker / bench / broker) "
        "| Kafka lag max (committed / in flight) | undelivered |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["runs"]:
        s, rss = dict(r["stages_ms"]), r["peak_rss_mb"]
        # latency of a flood run is only how long the backlog was: not shown
        lat = r["latency_ms"] if r["mode"] == "paced" else {}
        if r["mode"] != "paced":
            s.pop("transport", None)
        lag = f"{r['lag']['consumer_lag_max']} / {r['lag']['in_flight_max']}" if r["lag"] else None
        secs = r["cpu"].get("seconds", {})
        worker_cpu = secs.get(
            "workers", secs.get("bench") if r["name"].startswith("floor") else None
        )
        worker_ms = worker_cpu * 1e3 / r["frames"] if worker_cpu and r["frames"] else None
        lines.append(
            f"| {r['name']} | {r['workers']} | {r['mode']}"
            + (f" {r['offered_fps']:.0f} fps" if r["offered_fps"] else "")
            + f" | {r['cameras']} | {r['frames']} | {r['fps']:.1f} | {_fmt(lat.get('p50'))}"
            f" | {_fmt(lat.get('p95'))} | {_fmt(lat.get('p99'))}"
            + "".join(
                f" | {_fmt(s.get(k))}"
                for k in ("decode", "detect", "embed", "match", "draw", "transport")
            )
            + f" | {_fmt(r['cpu'].get('cores_used'), 2)} | {_fmt(r['cpu'].get('ms_per_frame'))}"
            f" / {_fmt(worker_ms)}"
            f" | {_fmt(rss.get('workers'), 0)} / {_fmt(rss.get('bench'), 0)}"
            f" / {_fmt(rss.get('broker'), 0)} | {_fmt(lag)}"
            f" | {_fmt(r['extra'].get('undelivered'))} |"
        )
    lines += ["", "| target | goal | measured | reached |", "|---|---|---|---|"]
    for t in doc["targets"]:
        mark = {True: "yes", False: "**no**", None: "-"}[t["reached"]]
        lines.append(f"| {t['target']} | {t['goal']} | {t['measured']} | {mark} |")
    return "\n".join(lines)


# ---- figure ----------------------------------------------------------------------------


def figure(doc: dict[str, Any], path: Path) -> None:
    """Latency box plot against workers (log10 ms, as the seed's figure) and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 2]})
    names = {
        "kafka-paced": "Kafka",
        "kafka-paced-separate-match": "Kafka, match\nworker",
        "embedded-paced": "embedded",
        "kafka-overload": "Kafka\noverload",
        "kafka-overload-max-age": "Kafka, max\nage, overload",
        "embedded-overload": "embedded\noverload",
    }
    paced = [r for r in doc["runs"] if r["name"] in names and r["latency_ms"]]
    stats, labels = [], []
    for r in paced:
        lat = r["latency_ms"]
        stats.append(
            {
                "med": math.log10(max(lat["p50"], 1)),
                "q1": math.log10(max(lat["p25"], 1)),
                "q3": math.log10(max(lat["p75"], 1)),
                "whislo": math.log10(max(lat["p1"], 1)),
                "whishi": math.log10(max(lat["p99"], 1)),
                "fliers": [],
            }
        )
        labels.append(
            f"{r['workers']} {names[r['name']]}\n{r['offered_fps']:.0f} in, {r['fps']:.0f} out"
        )
    if stats:
        ax1.bxp(stats, showfliers=False, patch_artist=True, boxprops={"facecolor": "#7fc7af"})
        ax1.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax1.axhline(math.log10(100), color="tab:green", ls=":", lw=1, label="100 ms")
    ax1.axhline(math.log10(300), color="tab:red", ls=":", lw=1, label="300 ms")
    ax1.set_xlabel("Number of detect workers (bus)")
    ax1.set_ylabel("Latency capture -> annotated, log10 (ms)")
    ax1.set_title(
        f"Latency, cameras paced at {doc['options']['load']:.0%} of measured capacity, then "
        f"overload\n(frames/s in and out; boxes p25-p75, whiskers p1-p99)",
        fontsize=10,
    )
    ax1.legend(loc="upper right", fontsize=8)

    def series(name: str) -> tuple[list[int], list[float]]:
        rows = sorted((r["workers"], r["fps"]) for r in doc["runs"] if r["name"] == name)
        return [w for w, _ in rows], [f for _, f in rows]

    floor = doc["floor_fps"]
    ws = sorted({r["workers"] for r in doc["runs"] if r["name"] in ("kafka", "embedded")})
    if ws:
        ax2.plot(ws, [floor * w for w in ws], "k--", lw=1, label="floor x workers")
    for name, style in (
        ("kafka", "o-"),
        ("embedded", "s-"),
        ("seed", "v-"),
        ("kafka-per-frame", "D--"),
    ):
        x, y = series(name)
        if x:
            ax2.plot(x, y, style, label=name)
            for xi, yi in zip(x, y, strict=True):
                ax2.annotate(
                    f"{yi:.0f}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8
                )
    ax2.set_xlabel("Number of detect workers")
    ax2.set_ylabel("Frames per second (640x360)")
    ax2.set_title(
        f"Throughput, {doc['embedder']} embedder; "
        f"the seed's figure: {SEED_FPS_PER_PROCESS:g} FPS per process",
        fontsize=10,
    )
    ax2.set_xticks(ws or [1])
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"sauron bench pipeline on {doc['machine']['cpu']} ({doc['machine']['cores']} cores)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(doc: dict[str, Any], png: Path) -> str:
    png.parent.mkdir(parents=True, exist_ok=True)
    figure(doc, png)
    return table(doc)
