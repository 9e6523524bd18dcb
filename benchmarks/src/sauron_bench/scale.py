"""``sauron bench scale``: many live cameras at a fixed rate each, over both buses.

    sauron bench scale [--cameras 4,8,16,24,32,48] [--fps 5] [--seconds 20]
                       [--buses kafka,embedded] [--workers 1,2] [--join 0]
                       [--live-frame-age S] [--no-annotated-jpeg]
                       [--bootstrap HOST:PORT [--broker-pid PID]] [--out DIR]

Each run is the whole product command, ``sauron run --until-done`` with a watchlist, over
N cameras that play clips of the realistic workload (faces walking over real footage,
:mod:`sauron_bench.realistic`) in real time at ``--fps`` frames a second each, so the
offered load is N x fps frames a second. For every bus, worker count and camera count it
records, over every frame from each camera's first:

- latency from capture to named result (``latency_ms`` of the results file): p50, p99, max;
- frames in (published), out (in the results file) and dropped (stale or queue-full);
- the CPU share of every process over the run (the ``sauron run`` process, each detect
  process, the broker, a joined worker), in % of one core;
- Kafka: the bytes the broker stored for the run's topics, per published frame.

The *knee* of a bus and worker count is the most cameras whose run kept p99 within
``--target-ms`` (300) with at most 1 % of the frames dropped. With ``--join K``, the Kafka
runs get K more ``sauron worker detect`` processes (as an operator adding capacity
would), started before the cameras and members of the same group.

It prints a table and writes ``scale.json`` and ``scale.png`` (p99 and p50 latency against
offered frames a second, one line per bus and worker count) into ``--out``. Without
``--bootstrap`` it starts (and stops) its own broker with ``scripts/kafka-broker``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from sauron_bench.measure import allowed_cores, cpu_name, percentiles

log = logging.getLogger(__name__)

TARGET_MS = 300.0
#: the settled figures leave out frames captured in a run's first seconds
SETTLE_S = 5.0
MAX_DROP_SHARE = 0.01


def _ints(text: str) -> list[int]:
    words = _items(text)
    if not all(w.isdigit() and int(w) > 0 for w in words):
        raise argparse.ArgumentTypeError(f"expected counts >= 1 like 4,8,16, got {text!r}")
    return sorted({int(w) for w in words})


def _buses(text: str) -> list[str]:
    words = _items(text)
    if not set(words) <= {"kafka", "embedded"}:
        raise argparse.ArgumentTypeError(f"buses are kafka and embedded, got {text!r}")
    return words


def _items(text: str) -> list[str]:
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return words


# ---------------------------------------------------------------------------- clips


def write_clips(folder: Path, clips: int, frames: int, fps: float) -> list[Path]:
    """``clips`` realistic camera clips of ``frames`` frames, as Motion-JPEG AVI files
    playing at ``fps`` (decoded like any video file by the camera's source)."""
    import cv2

    from sauron.imaging import decode_jpeg
    from sauron_bench.realistic import render_camera

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in range(clips):
        clip = render_camera(c, frames)
        first = decode_jpeg(clip.jpegs[0])
        path = folder / f"clip{c}.avi"
        writer = cv2.VideoWriter(
            str(path),
            cv2.VideoWriter.fourcc(*"MJPG"),
            fps,
            (first.shape[1], first.shape[0]),
        )
        try:
            for jpeg in clip.jpegs:
                writer.write(decode_jpeg(jpeg))
        finally:
            writer.release()
        paths.append(path)
    return paths


def watchlist_folder(folder: Path) -> Path:
    """The realistic workload's watchlist: the watched person's enrolled photo."""
    from sauron.demo.samples import sample_photos
    from sauron_bench.workload import ENROLLED_PHOTO, WATCHED

    person = folder / WATCHED
    person.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample_photos()[ENROLLED_PHOTO], person / ENROLLED_PHOTO)
    return folder


# ---------------------------------------------------------------------------- CPU


@dataclass
class CpuSampler:
    """CPU seconds of every process of a run (this one, its children, the broker, joined
    workers), sampled every ``interval_s``, so the share over any window can be read."""

    extra: dict[int, str] = field(default_factory=dict)  # pid -> role
    interval_s: float = 0.5
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _procs: dict[int, tuple[str, psutil.Process]] = field(default_factory=dict)
    _detect: int = 0

    def _role(self, proc: psutil.Process) -> str:
        if proc.pid in self.extra:
            return self.extra[proc.pid]
        if proc.pid == os.getpid():
            return "run"
        cmd = ""
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.cmdline())
        if "resource_tracker" in cmd:
            return "other"
        if "spawn_main" in cmd:  # a detect process of this run
            self._detect += 1
            return f"detect-{self._detect - 1}"
        return "other"

    def _sample(self) -> None:
        me = psutil.Process()
        found = [me, *me.children(recursive=True)]
        for pid in self.extra:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
        for proc in found:
            if proc.pid not in self._procs:
                self._procs[proc.pid] = (self._role(proc), proc)
        cpu: dict[str, float] = {}
        for role, proc in self._procs.values():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                cpu[role] = cpu.get(role, 0.0) + t.user + t.system
        self.samples.append((time.time(), cpu))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> CpuSampler:
        self._sample()
        threading.Thread(target=self._loop, daemon=True, name="bench-cpu").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sample()

    def share(self, start: float, end: float) -> dict[str, float]:
        """Per role, % of one core used between two wall-clock times (nearest samples)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return {
            role: round(100.0 * (c1[role] - c0.get(role, 0.0)) / (t1 - t0), 1)
            for role in sorted(c1)
            if role in c0
        }


# ---------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Plan:
    bus: str
    cameras: int
    workers: int
    join: int = 0


def _broker_bytes(data_dir: Path | None, prefix: str) -> int | None:
    """Bytes in the broker's log segments of the topics whose names start with ``prefix``."""
    if data_dir is None or not data_dir.is_dir():
        return None
    total = 0
    for part in data_dir.glob(f"{prefix}.*"):
        for seg in part.glob("*.log"):
            with contextlib.suppress(OSError):
                total += seg.stat().st_size
    return total


def _join_workers(config: dict[str, Any], folder: Path, n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` ``sauron worker detect`` processes on the run's settings (joined members)."""
    if n <= 0:
        return []
    path = folder / f"join-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "sauron.cli", "worker", "detect", "--config", str(path)]
    return [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(n)]


def _stop_joined(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_point(
    plan: Plan,
    clips: list[Path],
    watchlist: Path,
    work: Path,
    *,
    fps: float,
    bootstrap: str | None,
    broker_pid: int | None,
    broker_data: Path | None,
    live_frame_age: float | None,
    annotated_jpeg: bool = True,
    keep_results: Path | None = None,
) -> dict[str, Any]:
    """One ``sauron run --until-done`` of ``plan.cameras`` live cameras; its figures."""
    from sauron.config import load_settings
    from sauron.pipeline import RunOptions, run
    from sauron_bench.workload import camera_names

    prefix = f"scale-{uuid.uuid4().hex[:10]}"
    # ids that also CRC-32 evenly over the processes, as placement by hash (Kafka's
    # `camera` partitioning without spread placement) would need
    names = camera_names(plan.cameras, plan.workers)
    config: dict[str, Any] = {
        "cameras": [
            {"name": name, "source": str(clips[i % len(clips)]), "realtime": True}
            for i, name in enumerate(names)
        ],
        "bus": {"type": plan.bus},
        "topics": {"prefix": prefix, "partitions": max(plan.cameras, plan.workers + plan.join)},
        "match": {"watchlist": str(watchlist)},
    }
    if live_frame_age is not None:
        config["detect"] = {"live_frame_age_s": live_frame_age}
    if plan.bus == "kafka":
        assert bootstrap is not None
        config["bus"]["bootstrap_servers"] = bootstrap
        if not annotated_jpeg:  # (set only when off: older sauron versions lack it)
            config["bus"]["annotated_jpeg"] = False
    settings = load_settings(None, config)
    results = work / f"{prefix}.jsonl"
    log.info("scale run: %s", plan)
    joined: list[subprocess.Popen[bytes]] = []
    if plan.bus == "kafka" and plan.join:
        from sauron.bus.admin import ensure_topics

        ensure_topics(settings)
        joined = _join_workers(config, work, plan.join)
    extra = {p.pid: f"joined-{i}" for i, p in enumerate(joined)}
    if broker_pid and plan.bus == "kafka":
        extra[broker_pid] = "broker"
    sampler = CpuSampler(extra).start()
    try:
        summary = run(
            settings,
            RunOptions(processes=plan.workers, until_done=True, results=results, timeout_s=900),
        )
    finally:
        sampler.stop()
        _stop_joined(joined)
    if summary.stopped:  # Ctrl-C or SIGTERM: the whole sweep ends, not only this point
        raise KeyboardInterrupt
    records = [json.loads(line) for line in results.read_text().splitlines() if line]
    if keep_results is not None:
        keep_results.mkdir(parents=True, exist_ok=True)
        shutil.move(results, keep_results / f"{plan.bus}-{plan.workers}-{plan.cameras}.jsonl")
    else:
        results.unlink()
    frames_in = sum(summary.frames_in.values())
    start = min((r["ts"] for r in records), default=0.0)
    end = max((r["ts"] + r["latency_ms"] / 1e3 for r in records), default=0.0)
    stored = _broker_bytes(broker_data, prefix) if plan.bus == "kafka" else None
    lat = percentiles(r["latency_ms"] for r in records)
    cpu = sampler.share(start, end)
    cpu_s = sum(cpu.values()) / 100.0 * (end - start)
    return {
        "bus": plan.bus,
        "cameras": plan.cameras,
        "workers": plan.workers,
        "joined": plan.join,
        "offered_fps": round(plan.cameras * fps, 1),
        "frames_in": frames_in,
        "frames_out": len(records),
        "dropped": summary.dropped,
        "dropped_stale": summary.dropped_stale,
        # neither out nor counted as dropped by `sauron run`: e.g. dropped as stale by a
        # joined worker, which reports to no one but its metrics
        "unaccounted": frames_in - len(records) - summary.dropped,
        "drop_share": round(1 - len(records) / frames_in, 4) if frames_in else None,
        "latency_ms": {k: lat[k] for k in ("p50", "p99", "max") if k in lat},
        # the same past the first SETTLE_S seconds of capture: the start-up (every
        # camera's first frame is a full scan with every face embedded) left out
        "latency_ms_settled": _settled(records, start),
        "timeline": _timeline(records, start),
        "cpu_percent": cpu,
        # CPU of every process of the run (broker included) per frame that came out
        "cpu_ms_per_frame": round(cpu_s * 1e3 / len(records), 1) if records else None,
        "broker_bytes_per_frame": round(stored / frames_in) if stored and frames_in else None,
        "seconds": round(summary.seconds, 1),
        "ready_s": None if summary.ready_s is None else round(summary.ready_s, 1),
    }


def _settled(records: list[dict[str, Any]], start: float) -> dict[str, float]:
    lat = percentiles(r["latency_ms"] for r in records if r["ts"] - start >= SETTLE_S)
    return {k: lat[k] for k in ("p50", "p99", "max") if k in lat}


def _timeline(records: list[dict[str, Any]], start: float) -> list[dict[str, float]]:
    """Per second of capture time from the first frame: frames out, p50, p99, max ms."""
    by_second: dict[int, list[float]] = {}
    for r in records:
        by_second.setdefault(int(r["ts"] - start), []).append(r["latency_ms"])
    out: list[dict[str, float]] = []
    for second in sorted(by_second):
        lat = percentiles(by_second[second])
        out.append(
            {
                "s": second,
                "n": len(by_second[second]),
                **{k: lat[k] for k in ("p50", "p99", "max") if k in lat},
            }
        )
    return out


# ---------------------------------------------------------------------------- report


def knees(runs: list[dict[str, Any]], target_ms: float) -> dict[str, int]:
    """Per bus and worker count (key ``bus/workers[+joined]``): the most cameras of a run
    with p99 within ``target_ms`` and at most 1 % of the frames dropped (0: none)."""
    out: dict[str, int] = {}
    for r in runs:
        key = _series(r)
        ok = (
            r["latency_ms"].get("p99", float("inf")) <= target_ms
            and (r["drop_share"] or 0.0) <= MAX_DROP_SHARE
        )
        out[key] = max(out.get(key, 0), r["cameras"] if ok else 0)
    return out


def _series(r: dict[str, Any]) -> str:
    return f"{r['bus']}/{r['workers']}" + (f"+{r['joined']}" if r["joined"] else "")


def table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| bus | workers | cameras | offered fps | frames in / out / dropped (stale) "
        f"| p50 / p99 / max ms | p99 from {SETTLE_S:.0f} s | CPU % per process | CPU ms/frame "
        "| broker B/frame |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        lat = r["latency_ms"]
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_percent"].items())
        workers = f"{r['workers']}" + (f" + {r['joined']} joined" if r["joined"] else "")
        lines.append(
            f"| {r['bus']} | {workers} | {r['cameras']} | {r['offered_fps']} "
            f"| {r['frames_in']} / {r['frames_out']} / {r['dropped']} ({r['dropped_stale']}) "
            f"| {lat.get('p50')} / {lat.get('p99')} / {lat.get('max')} "
            f"| {r.get('latency_ms_settled', {}).get('p99', '-')} | {cpu} "
            f"| {r['cpu_ms_per_frame']} "
            f"| {r['broker_bytes_per_frame'] or '-'} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path, target_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key in sorted({_series(r) for r in runs}):
        rs = sorted((r for r in runs if _series(r) == key), key=lambda r: r["offered_fps"])
        x = [r["offered_fps"] for r in rs]
        (line,) = ax.plot(x, [r["latency_ms"].get("p99") for r in rs], marker="o", label=key)
        ax.plot(
            x,
            [r["latency_ms"].get("p50") for r in rs],
            marker=".",
            linestyle=":",
            color=line.get_color(),
        )
    ax.axhline(target_ms, color="grey", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("offered load, frames/s (cameras x fps)")
    ax.set_ylabel("latency, ms (solid: p99, dotted: p50)")
    ax.set_title("sauron run: capture-to-result latency against offered load")
    ax.legend(title="bus/workers")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine(load_before: list[float]) -> dict[str, Any]:
    """The processor, its cores and the load average (1, 5, 15 min) before and after: the
    machine may be shared, so figures are compared within one run."""
    after = [round(x, 2) for x in os.getloadavg()]
    return {"cpu": cpu_name(), "cores": len(allowed_cores()), "load": [load_before, after]}


# ---------------------------------------------------------------------------- command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sauron bench scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cameras", type=_ints, default=[4, 8, 16, 24, 32, 48], help="camera counts")
    p.add_argument("--fps", type=float, default=5.0, help="frame rate of every camera")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each camera's clip")
    p.add_argument("--buses", type=_buses, default=["kafka", "embedded"], help="kafka,embedded")
    p.add_argument("--workers", type=_ints, default=[1, 2], help="detect process counts")
    p.add_argument(
        "--join",
        type=int,
        default=0,
        help="Kafka runs: this many more `sauron worker detect` processes join the group",
    )
    p.add_argument(
        "--live-frame-age",
        type=float,
        default=None,
        help="detect.live_frame_age_s of every run (default: the setting's default)",
    )
    p.add_argument(
        "--no-annotated-jpeg",
        dest="annotated_jpeg",
        action="store_false",
        help="Kafka runs: bus.annotated_jpeg false (a frame's JPEG crosses the broker once)",
    )
    p.add_argument("--target-ms", type=float, default=TARGET_MS, help="p99 bound of the knee")
    p.add_argument(
        "--keep-results",
        action="store_true",
        help="keep each run's results file in OUT/results/ (BUS-WORKERS-CAMERAS.jsonl)",
    )
    p.add_argument("--clips", type=int, default=4, help="distinct clips the cameras play")
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    p.add_argument(
        "--broker-pid",
        type=int,
        default=None,
        help="with --bootstrap: the broker's pid, whose CPU is then counted as `broker`",
    )
    p.add_argument("--out", type=Path, default=Path("sauron-bench"), help="folder of the output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.fps <= 0 or args.seconds <= 0 or args.join < 0:
        raise SystemExit("sauron bench scale: --fps and --seconds must be > 0, --join >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    plans = [
        Plan(bus, cams, workers, args.join if bus == "kafka" else 0)
        for bus, workers, cams in itertools.product(args.buses, args.workers, args.cameras)
    ]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sauron-scale-") as tmp:
        work = Path(tmp)
        frames = max(2, round(args.seconds * args.fps))
        clips = write_clips(work / "clips", args.clips, frames, args.fps)
        watchlist = watchlist_folder(work / "watchlist")
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None and "kafka" in args.buses:
            from sauron_bench.broker import LocalBroker, warm_up

            broker = LocalBroker().start()
            bootstrap = broker.bootstrap
            warm_up(bootstrap, 10.0)
        data = Path(broker.env["SAURON_KAFKA_DIR"]) / "node-1" / "data" if broker else None
        try:
            for plan in plans:
                runs.append(
                    run_point(
                        plan,
                        clips,
                        watchlist,
                        work,
                        fps=args.fps,
                        bootstrap=bootstrap,
                        broker_pid=broker.pid if broker else args.broker_pid,
                        broker_data=data,
                        live_frame_age=args.live_frame_age,
                        annotated_jpeg=args.annotated_jpeg,
                        keep_results=args.out / "results" if args.keep_results else None,
                    )
                )
                print(table(runs[-1:]).splitlines()[-1], flush=True)
        finally:
            if broker is not None:
                broker.stop()
    from sauron.config import DetectConfig

    knee = knees(runs, args.target_ms)
    doc = {
        "version": 1,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "live_frame_age_s": (
            args.live_frame_age
            if args.live_frame_age is not None
            else DetectConfig.model_fields["live_frame_age_s"].default
        ),
        "machine": machine(load_before),
        "seconds": round(time.monotonic() - t0, 1),
        "knee_cameras": knee,
        "runs": runs,
    }
    (args.out / "scale.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(runs, args.out / "scale.png", args.target_ms)
    print(table(runs))
    print(f"knee (most cameras at p99 <= {args.target_ms:.0f} ms, <= 1 % dropped): {knee}")
    print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
