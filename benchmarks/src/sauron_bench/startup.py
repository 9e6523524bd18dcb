"""``sauron bench startup``: ``sauron run --bus kafka`` from a cold start, as a user sees it.

    sauron bench startup [--cameras 3] [--workers 1,2,3] [--seconds 30] [--fps 10]
                         [--placement spread] [--partitioning camera] [--join-after S]
                         [--out DIR]

Each run is the whole product command, ``sauron run --bus kafka --until-done`` with a
watchlist, started from nothing (fresh topics and consumer group, worker processes
spawned, models loaded) while the cameras play generated 640x360 clips in real time
(:func:`sauron.demo.synth.demo_clips`, camera i plays clip i mod 2). The latency of every
frame, capture to named result (``latency_ms`` of the results file), is summarised over
all frames from each camera's first, over the first ``--first`` seconds, and after them
(the warmed-up figure); with each camera's first-frame latency, frames in and out,
duplicates, frames dropped, the seconds until the workers were ready and how the
cameras were spread over the workers.

With ``--join-after S``, each run also starts one more detect worker (``sauron worker
detect``, a process of its own, as an operator adding capacity would) S seconds after
the first result; the
group rebalances while the cameras play, and the latency of the frames captured from the
join on (``after_join_ms``, and each camera's worst frame after it) shows whether any
camera waited for the rebalance.

It prints a table and writes ``startup.json`` into ``--out``. Without ``--bootstrap`` it
starts (and stops) its own broker with ``scripts/kafka-broker``.
"""

from __future__ import annotations

import argparse
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
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from sauron_bench.measure import allowed_cores, cpu_name, percentiles

log = logging.getLogger(__name__)


def _ints(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2,3, got {text!r}") from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError("counts must be >= 1")
    return out


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def camera_sources(clips: list[Any], n: int) -> list[dict[str, Any]]:
    return [
        {"name": f"cam{i + 1}", "source": str(clips[i % len(clips)].path), "realtime": True}
        for i in range(n)
    ]


def latency_summary(records: list[dict[str, Any]], first_s: float) -> dict[str, Any]:
    """Percentiles of ``latency_ms`` over all records, the first ``first_s`` seconds of
    capture time and the rest, and the first frame of each camera."""
    if not records:
        return {"all_frames_ms": {}, "first_seconds_ms": {}, "after_first_ms": {}}
    t0 = min(r["ts"] for r in records)
    early = [r["latency_ms"] for r in records if r["ts"] < t0 + first_s]
    late = [r["latency_ms"] for r in records if r["ts"] >= t0 + first_s]
    first = {r["camera"]: r["latency_ms"] for r in records if r["frame"] == 0}
    return {
        "all_frames_ms": percentiles(r["latency_ms"] for r in records),
        "first_seconds_ms": percentiles(early),
        "after_first_ms": percentiles(late),
        "first_frame_ms": {c: round(v, 1) for c, v in sorted(first.items())},
    }


def run_once(
    bootstrap: str,
    clips: list[Any],
    watchlist: Path,
    out_dir: Path,
    *,
    cameras: int,
    workers: int,
    placement: str,
    partitioning: str,
    first_s: float,
    join_after: float = 0.0,
    group_protocol: str = "classic",
) -> dict[str, Any]:
    """One cold ``sauron run --bus kafka`` over ``cameras`` real-time cameras (and, with
    ``join_after``, one more worker process joining the group that many seconds in)."""
    from sauron.config import load_settings
    from sauron.pipeline import RunOptions, run

    prefix = f"startup-{uuid.uuid4().hex[:10]}"
    config = {
        "cameras": camera_sources(clips, cameras),
        "bus": {
            "type": "kafka",
            "bootstrap_servers": bootstrap,
            "group_protocol": group_protocol,
        },
        "topics": {"prefix": prefix, "placement": placement, "partitioning": partitioning},
        "match": {"watchlist": str(watchlist)},
        # Every frame is measured, a late one too: with the live age limit on, frames held
        # up by a start or a join would be dropped and the stall would not show.
        "detect": {"live_frame_age_s": None},
    }
    settings = load_settings(None, config)
    results = out_dir / f"{prefix}.jsonl"
    log.info("startup run: %d camera(s), %d worker(s), %s", cameras, workers, placement)
    joiner = None
    if join_after > 0:
        joiner = _Joiner(out_dir / f"{prefix}.yaml", config, join_after, results)
    try:
        summary = run(settings, RunOptions(processes=workers, until_done=True, results=results))
        if summary.stopped:  # Ctrl-C or SIGTERM ends the benchmark
            raise KeyboardInterrupt
    finally:
        joined_at = joiner.stop() if joiner is not None else None
    records = [json.loads(line) for line in results.read_text().splitlines() if line]
    results.unlink()
    seen = Counter((r["camera"], r["frame"]) for r in records)
    per_member = [
        sorted(c for c, p in summary.placement.items() if p in parts)
        for parts in summary.members.values()
    ]
    return {
        "cameras": cameras,
        "workers": workers,
        "placement": placement if partitioning == "camera" else "-",
        "partitioning": partitioning,
        "group_protocol": group_protocol,
        "frames_in": sum(summary.frames_in.values()),
        "frames_out": len(seen),
        "repeated": sum(n - 1 for n in seen.values()),
        "dropped": summary.dropped,
        "dropped_stale": summary.dropped_stale,
        "ready_s": round(summary.ready_s or 0.0, 2),
        "seconds": round(summary.seconds, 1),
        "camera_partitions": summary.placement,
        "cameras_per_worker": per_member,
        **latency_summary(records, first_s),
        **({} if joined_at is None else join_summary(records, joined_at)),
    }


class _Joiner:
    """Starts ``sauron worker detect`` on the run's settings ``after`` seconds after the
    first result came out (an operator adding a worker to a running group), and stops it
    at the end."""

    def __init__(self, path: Path, config: dict[str, Any], after: float, results: Path) -> None:
        path.write_text(yaml.safe_dump(config))
        self.path = path
        self.results = results
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._start, args=(after,), daemon=True)
        self._thread.start()

    def _start(self, after: float) -> None:
        while not (self.results.exists() and self.results.stat().st_size > 0):
            if self._cancel.wait(0.1):
                return
        if self._cancel.wait(after):
            return
        self.started_at = time.time()
        cmd = [sys.executable, "-m", "sauron.cli", "worker", "detect", "--config", str(self.path)]
        log.info("joining worker: %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def stop(self) -> float | None:
        """Stop the joined worker (it leaves the group); when it was started."""
        self._cancel.set()
        self._thread.join()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.started_at


def join_summary(records: list[dict[str, Any]], joined_at: float) -> dict[str, Any]:
    """Latency of the frames captured after a worker was started to join the group."""
    after = [r for r in records if r["ts"] >= joined_at]
    worst: dict[str, float] = {}
    for r in after:
        worst[r["camera"]] = max(worst.get(r["camera"], 0.0), r["latency_ms"])
    return {
        "join_after_s": round(joined_at - min((r["ts"] for r in records), default=joined_at), 1),
        "after_join_ms": percentiles(r["latency_ms"] for r in after),
        "worst_after_join_ms": {c: round(v, 1) for c, v in sorted(worst.items())},
    }


def table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| cameras | workers | partitioning | frames in / out | all frames p50 / p99 / max "
        "| first s p50 / p99 | after p50 / p99 | first frame (max) | cameras per worker "
        "| ready s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        a, f, w = r["all_frames_ms"], r["first_seconds_ms"], r["after_first_ms"]
        spread = " + ".join(str(len(c)) for c in r["cameras_per_worker"]) or "-"
        mode = r["partitioning"] + (f", {r['placement']}" if r["partitioning"] == "camera" else "")
        lines.append(
            f"| {r['cameras']} | {r['workers']} | {mode} | {r['frames_in']} / {r['frames_out']} "
            f"| {a.get('p50')} / {a.get('p99')} / {a.get('max')} | {f.get('p50')} / "
            f"{f.get('p99')} | {w.get('p50')} / {w.get('p99')} "
            f"| {max(r['first_frame_ms'].values(), default=None)} | {spread} | {r['ready_s']} |"
        )
    joins = [r for r in runs if "after_join_ms" in r]
    if joins:
        lines += [
            "",
            "| group protocol | cameras | workers + 1 joining at "
            "| after the join p50 / p99 / max | worst camera after the join |",
            "|---|---|---|---|---|",
        ]
        for r in joins:
            j = r["after_join_ms"]
            lines.append(
                f"| {r['group_protocol']} | {r['cameras']} | {r['workers']} + 1 at "
                f"{r['join_after_s']} s | {j.get('p50')} / {j.get('p99')} / {j.get('max')} "
                f"| {max(r['worst_after_join_ms'].values(), default=None)} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sauron bench startup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cameras", type=_ints, default=[3], help="camera counts, e.g. 1,3,6")
    p.add_argument("--workers", type=_ints, default=[1, 2, 3], help="detect worker counts")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each camera's clip")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the cameras")
    p.add_argument("--first", type=float, default=3.0, help="seconds reported apart")
    p.add_argument("--placement", type=_words, default=["spread"], help="spread,hash")
    p.add_argument("--partitioning", type=_words, default=["camera"], help="camera,frame")
    p.add_argument(
        "--join-after",
        type=float,
        default=0.0,
        help="start one more detect worker this many seconds after each run's first "
        "result (0 = none)",
    )
    p.add_argument(
        "--group-protocol",
        type=_words,
        default=["classic"],
        help="consumer group protocols to run, classic,consumer (bus.group_protocol)",
    )
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    p.add_argument("--out", type=Path, default=Path("sauron-bench"), help="folder of the JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    from sauron.demo.samples import sample_photos
    from sauron.demo.synth import demo_clips

    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="sauron-startup-") as tmp:
        work = Path(tmp)
        clips = demo_clips(work / "clips", frames=round(args.seconds * args.fps), fps=args.fps)
        watchlist = work / "watchlist"
        (watchlist / "obama").mkdir(parents=True)
        shutil.copyfile(sample_photos()["obama.jpg"], watchlist / "obama" / "obama.jpg")
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            from sauron_bench.broker import LocalBroker

            broker = LocalBroker().start()
            bootstrap = broker.bootstrap
        runs = []
        try:
            plan = itertools.product(
                args.group_protocol, args.cameras, args.workers, args.partitioning, args.placement
            )
            for protocol, cams, workers, mode, place in plan:
                if mode == "frame" and place != args.placement[0]:
                    continue  # placement means nothing with frame partitioning
                runs.append(
                    run_once(
                        bootstrap,
                        clips,
                        watchlist,
                        work,
                        cameras=cams,
                        workers=workers,
                        placement=place,
                        partitioning=mode,
                        first_s=args.first,
                        join_after=args.join_after,
                        group_protocol=protocol,
                    )
                )
        finally:
            if broker is not None:
                broker.stop()
    doc = {
        "version": 1,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {
            "cpu": cpu_name(),
            "cores": len(allowed_cores()),
            "load_avg_before": load_before,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": round(time.monotonic() - t0, 1),
        "runs": runs,
    }
    (args.out / "startup.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(table(runs))
    print(f"wrote {args.out / 'startup.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
