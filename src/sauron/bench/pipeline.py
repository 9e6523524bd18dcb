"""``sauron bench pipeline``: the seed's scaling study, reproduced and beaten, in one run.

    sauron bench pipeline [--workers 1,2] [--out DIR] [--bootstrap HOST:PORT] [--quick]

One run, on one machine, with one workload (``--workload realistic``, the default: faces
walking over real footage, see :mod:`sauron.bench.realistic`; ``light``: a generated scene
with 1-3 persistent faces, see :mod:`sauron.bench.workload`), measures:

1. the floor: the frames through a bare single-process loop (decode, detect, embed,
   match), with tracking and with per-frame embedding (and the same with dlib's embedder),
   scored against the ground truth, and the bare face_recognition-style baseline loop;
2. throughput (frames as fast as they are taken) of the Kafka pipeline over a real broker
   and of the embedded bus, with 1..cores detect workers, and the per-frame mode (frame
   partitioning, no tracking) over Kafka;
3. the seed's way as a baseline over the same broker (base64 JSON of raw pixels, flush and
   commit after every message);
4. latency from capture to annotated frame available, with cameras paced like live ones
   at a fixed offered load of ``--load`` (80 %) of the measured capacity of the most
   workers, for every worker count (fewer workers: overload) through Kafka, and through
   the embedded bus with its drop-oldest policy at the same load on one worker.

It prints a table, writes ``pipeline.json`` and ``pipeline.png`` (latency box plot against the
number of workers, like the seed's figure, and throughput) into ``--out``. Without
``--bootstrap`` it starts (and stops) its own broker with ``scripts/kafka-broker``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sauron.bench.floor import FloorRun, agreement, run_floor
from sauron.bench.measure import RunResult, allowed_cores, cpu_name
from sauron.bench.pipelines import (
    EmbeddedPipeline,
    KafkaPipeline,
    embedded_settings,
    kafka_settings,
)
from sauron.bench.runner import Feed, measure
from sauron.bench.workload import Workload, camera_names, make_workload, watchlist_people

log = logging.getLogger(__name__)


def _machine() -> dict[str, Any]:
    import psutil

    return {
        "cpu": cpu_name(),
        "cores": len(allowed_cores()),
        "python": platform.python_version(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
    }


def _embedder_name(embedder: str) -> str:
    if embedder != "auto":
        return embedder
    from sauron.detect.embedders import default_embedder_name

    return default_embedder_name()


class Bench:
    """Holds the options, the workload and every result of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.embedder = _embedder_name(args.embedder)
        self.workers: list[int] = args.workers
        self.wmax = max(self.workers)
        self.cameras = camera_names(args.cameras, args.cameras)
        self.runs: list[RunResult] = []
        self.out: dict[str, Any] = {}
        self.broker_pid: int | None = None
        self.bootstrap: str | None = args.bootstrap
        self.workload: Workload | None = None
        self.embedded_cap: dict[int, float] = {}
        self.baseline: RunResult | None = None

    # ---- pieces -----------------------------------------------------------------------

    def _flood_frames(self, fps_estimate: float) -> int:
        """Frames per camera for a flood run of about ``--seconds``."""
        total = fps_estimate * self.args.seconds
        return max(self.args.min_frames, math.ceil(total / len(self.cameras)))

    def _record(self, result: RunResult) -> RunResult:
        self.runs.append(result)
        return result

    def _paced_feed(self, fps: float) -> Feed:
        return Feed(fps=fps, seconds=self.args.paced_seconds, drain_s=20, warmup_s=self.args.warmup)

    def _measure(
        self,
        pipe: Any,
        feed: Feed,
        workers: int,
        *,
        cameras: list[str] | None = None,
        tracking: bool = True,
        label: str | None = None,
    ) -> RunResult:
        """One pipeline run over the workload, recorded; the broker's CPU is counted for
        the runs that use it."""
        assert self.workload is not None
        return self._record(
            measure(
                pipe,
                self.workload,
                cameras or self.cameras,
                feed,
                workers=workers,
                tracking=tracking,
                embedder=self.embedder,
                broker_pid=None if isinstance(pipe, EmbeddedPipeline) else self.broker_pid,
                label=label,
            )
        )

    def floor(self) -> None:
        assert self.workload is not None
        a = self.args
        people = self.people
        track = run_floor(
            self.workload,
            self.cameras,
            people,
            embedder=self.embedder,
            tracking=True,
            frames_per_camera=a.floor_frames,
        )
        per = run_floor(
            self.workload,
            self.cameras,
            people,
            embedder=self.embedder,
            tracking=False,
            frames_per_camera=a.floor_frames,
        )
        track.result.name, per.result.name = "floor", "floor-per-frame"
        self._record(track.result)
        self._record(per.result)
        self.floor_track, self.floor_per = track, per
        self.out["tracking"] = {self.embedder: self._tracking_entry(track, per)}
        if a.baseline_frames > 0:
            from sauron.bench.realistic import run_baseline

            self.baseline = self._record(
                run_baseline(self.workload, self.cameras, people, a.baseline_frames)
            )
        if a.dlib and self.embedder != "dlib":
            dlib_people = watchlist_people("dlib")
            dt = run_floor(
                self.workload,
                self.cameras,
                dlib_people,
                embedder="dlib",
                tracking=True,
                frames_per_camera=a.dlib_frames,
            )
            dp = run_floor(
                self.workload,
                self.cameras,
                dlib_people,
                embedder="dlib",
                tracking=False,
                frames_per_camera=a.dlib_frames,
            )
            dt.result.name, dp.result.name = "floor-dlib", "floor-dlib-per-frame"
            self._record(dt.result)
            self._record(dp.result)
            self.out["tracking"]["dlib"] = self._tracking_entry(dt, dp)

    @staticmethod
    def _tracking_entry(track: FloorRun, per: FloorRun) -> dict[str, Any]:
        t, p = track.result, per.result
        return {
            "fps_tracking": t.fps,
            "fps_per_frame": p.fps,
            "speedup": round(t.fps / p.fps, 2) if p.fps else None,
            "faces_embedded_share": round(
                t.extra["faces_embedded"] / max(1, t.extra["faces_seen"]), 4
            ),
            "agreement": agreement(track.names, per.names),
            "accuracy_tracking": t.extra["accuracy"],
            "accuracy_per_frame": p.extra["accuracy"],
        }

    def kafka_flood(
        self,
        workers: int,
        *,
        tracking: bool = True,
        partitioning: str = "camera",
        in_detect: bool = True,
        label: str = "kafka",
    ) -> RunResult:
        assert self.workload is not None and self.bootstrap is not None
        est = (self.floor_track if tracking else self.floor_per).result.fps * workers
        settings = kafka_settings(
            self.bootstrap,
            partitions=len(self.cameras),
            tracking=tracking,
            embedder=self.embedder,
            partitioning=partitioning,
            batch_size=self.args.batch_size,
            in_detect=in_detect,
        )
        pipe = KafkaPipeline(settings, workers, self.people)
        feed = Feed(frames=self._flood_frames(est))
        return self._measure(pipe, feed, workers, tracking=tracking, label=label)

    def embedded_flood(self, workers: int) -> RunResult:
        est = self.floor_track.result.fps * workers
        settings = embedded_settings(tracking=True, embedder=self.embedder)
        pipe = EmbeddedPipeline(settings, workers, self.people, block=True)
        return self._measure(pipe, Feed(frames=self._flood_frames(est)), workers)

    def seed(self, workers: int) -> RunResult:
        from sauron.bench.seed import SeedPipeline

        assert self.workload is not None and self.bootstrap is not None
        est = self.floor_per.result.fps * workers * 0.6
        pipe = SeedPipeline(self.bootstrap, workers, len(self.cameras), self.people, self.embedder)
        return self._measure(pipe, Feed(frames=self._flood_frames(est)), workers, tracking=False)

    def paced_plan(self, capacity: float, load: float, workers: int) -> tuple[list[str], float]:
        """Cameras (a multiple of ``workers``, one partition each, so they spread evenly)
        and the per-camera rate, near ``--camera-fps``, that offer ``load`` x ``capacity``."""
        offered = load * capacity
        n = workers * max(1, round(offered / (self.args.camera_fps * workers)))
        return camera_names(n, n), offered / n

    def kafka_paced(
        self,
        workers: int,
        cameras: list[str],
        fps: float,
        *,
        max_frame_age_s: float | None = None,
        in_detect: bool = True,
        label: str = "kafka-paced",
    ) -> RunResult:
        assert self.workload is not None and self.bootstrap is not None
        settings = kafka_settings(
            self.bootstrap,
            partitions=len(cameras),
            tracking=True,
            embedder=self.embedder,
            max_frame_age_s=max_frame_age_s,
            batch_size=self.args.batch_size,
            in_detect=in_detect,
        )
        pipe = KafkaPipeline(settings, workers, self.people)
        return self._measure(pipe, self._paced_feed(fps), workers, cameras=cameras, label=label)

    def embedded_paced(
        self, workers: int, cameras: list[str], fps: float, label: str = "embedded-paced"
    ) -> RunResult:
        settings = embedded_settings(tracking=True, embedder=self.embedder)
        pipe = EmbeddedPipeline(settings, workers, self.people, block=False)
        return self._measure(pipe, self._paced_feed(fps), workers, cameras=cameras, label=label)

    # ---- the whole run ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        t0 = time.monotonic()
        self.out["machine"] = _machine()
        if a.workload == "light":
            self.workload = make_workload(clips=a.clips, frames=a.clip_frames)
        else:
            from sauron.bench.realistic import make_realistic_workload

            self.workload = make_realistic_workload(cameras=a.clips, frames=a.clip_frames)
        self.people = watchlist_people(self.embedder)
        self.floor()
        broker = None
        if a.kafka and self.bootstrap is None:
            from sauron.bench.broker import LocalBroker

            broker = LocalBroker().start()
            self.bootstrap, self.broker_pid = broker.bootstrap, broker.pid
        try:
            if a.kafka and self.bootstrap is not None and a.warm_broker > 0:
                from sauron.bench.broker import warm_up

                warm_up(self.bootstrap, a.warm_broker)
            self._pipelines()
        finally:
            if broker is not None:
                broker.stop()
        self.out["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        self.out["seconds"] = round(time.monotonic() - t0, 1)
        return self._assemble()

    def _try(
        self, what: str, fn: Callable[..., RunResult], *args: Any, **kw: Any
    ) -> RunResult | None:
        """One run; a failure is logged and recorded, and the benchmark goes on."""
        try:
            return fn(*args, **kw)
        except Exception as exc:  # one broken run must not lose the others
            log.exception("run %s failed", what)
            self.out.setdefault("failed_runs", []).append(
                {"run": what, "error": f"{type(exc).__name__}: {exc}"}
            )
            return None

    def _pipelines(self) -> None:
        a = self.args
        capacity: dict[int, float] = {}
        for w in self.workers:
            if a.kafka and (r := self._try(f"kafka {w}", self.kafka_flood, w)):
                capacity[w] = r.fps
            if a.embedded and (r := self._try(f"embedded {w}", self.embedded_flood, w)):
                self.embedded_cap[w] = r.fps
                if not a.kafka:
                    capacity[w] = r.fps
        if a.kafka and a.separate_match:  # the match stage as a consumer group of its own
            for w in sorted({1, self.wmax}):
                self._try(
                    f"kafka-separate-match {w}",
                    self.kafka_flood,
                    w,
                    in_detect=False,
                    label="kafka-separate-match",
                )
        if a.kafka and a.per_frame:  # no tracking, frames spread over partitions
            for w in sorted({1, self.wmax}):
                self._try(
                    f"kafka-per-frame {w}",
                    self.kafka_flood,
                    w,
                    tracking=False,
                    partitioning="frame",
                    label="kafka-per-frame",
                )
        if a.kafka and a.seed:
            for w in sorted({1, self.wmax}):
                self._try(f"seed {w}", self.seed, w)
        if capacity:
            self._paced(capacity)

    def _plan(
        self, label: str, capacity: float, load: float, workers: int
    ) -> tuple[list[str], float]:
        cameras, fps = self.paced_plan(capacity, load, workers)
        self.out.setdefault("paced", {})[label] = {
            "workers": workers,
            "capacity_fps": capacity,
            "load": load,
            "cameras": len(cameras),
            "camera_fps": round(fps, 2),
            "offered_fps": round(fps * len(cameras), 2),
        }
        return cameras, fps

    def _paced(self, capacity: dict[int, float]) -> None:
        """Latency at ``--load`` of each worker count's measured capacity (through Kafka,
        and the embedded bus at the most workers), then ``--overload`` x the capacity of
        one worker: what each stay-live policy does."""
        a = self.args
        if a.kafka:
            for w in self.workers:
                if w in capacity:
                    cams, fps = self._plan(f"kafka-paced {w}", capacity[w], a.load, w)
                    self._try(f"kafka-paced {w}", self.kafka_paced, w, cams, fps)
            if a.separate_match and self.wmax in capacity:
                # the same load with the match stage as a group of its own: one hop more
                label = "kafka-paced-separate-match"
                cams, fps = self._plan(label, capacity[self.wmax], a.load, self.wmax)
                self._try(
                    label, self.kafka_paced, self.wmax, cams, fps, in_detect=False, label=label
                )
        if a.embedded and self.embedded_cap:
            w = max(self.embedded_cap)
            cams, fps = self._plan("embedded-paced", self.embedded_cap[w], a.load, w)
            self._try("embedded-paced", self.embedded_paced, w, cams, fps)
        if a.overload <= 0 or 1 not in capacity:
            return
        cams, fps = self._plan("overload", capacity[1], a.overload, 1)
        if a.kafka:
            self._try("kafka-overload", self.kafka_paced, 1, cams, fps, label="kafka-overload")
            if a.max_frame_age > 0:
                # the stay-live policy of the detect workers: frames older than this are
                # dropped (and counted) instead of detected
                self._try(
                    "kafka-overload-max-age",
                    self.kafka_paced,
                    1,
                    cams,
                    fps,
                    max_frame_age_s=a.max_frame_age,
                    label="kafka-overload-max-age",
                )
        if a.embedded:  # the embedded bus drops the oldest queued frame of the partition
            self._try(
                "embedded-overload", self.embedded_paced, 1, cams, fps, label="embedded-overload"
            )

    def _assemble(self) -> dict[str, Any]:
        from sauron.bench.report import assemble

        return assemble(self)


def _workers(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected worker counts like 1,2,4, got {text!r}"
        ) from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return out


def build_parser() -> argparse.ArgumentParser:
    cores = len(allowed_cores())
    p = argparse.ArgumentParser(
        prog="sauron bench pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=list(range(1, cores + 1)),
        help=f"detect worker counts to measure (default 1..{cores}, the cores)",
    )
    p.add_argument(
        "--cameras",
        type=int,
        default=max(4, 2 * cores),
        help="cameras of the throughput runs (one partition each)",
    )
    p.add_argument("--embedder", default="auto", choices=["auto", "onnx", "dlib"])
    p.add_argument("--bootstrap", help="use this Kafka broker instead of starting one")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("sauron-bench"),
        help="folder for pipeline.json and pipeline.png (default ./sauron-bench)",
    )
    p.add_argument("--seconds", type=float, default=6.0, help="length of a throughput run")
    p.add_argument(
        "--paced-seconds", type=float, default=12.0, help="length of a paced (latency) run"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="paced runs: latency percentiles of the frames captured after the first this "
        "many seconds (the first seconds are reported apart)",
    )
    p.add_argument("--camera-fps", type=float, default=10.0, help="rate of a paced camera")
    p.add_argument(
        "--load",
        type=float,
        default=0.8,
        help="offered load of the paced runs, as a share of measured capacity",
    )
    p.add_argument(
        "--warm-broker",
        type=float,
        default=10.0,
        help="seconds of traffic through the broker before the first Kafka run (0 = none)",
    )
    p.add_argument(
        "--overload",
        type=float,
        default=1.5,
        help="offered load of the overload runs, as a share of one worker's capacity "
        "(0 = skip them)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="detect.batch_size of the Kafka workers (default: the configured default)",
    )
    p.add_argument(
        "--max-frame-age",
        type=float,
        default=0.5,
        help="detect.max_frame_age_s of the overloaded Kafka run (0 = skip it)",
    )
    p.add_argument(
        "--floor-frames",
        type=int,
        default=None,
        help="floor frames per camera (default: a whole realistic clip, 60 light)",
    )
    p.add_argument(
        "--dlib-frames", type=int, default=15, help="floor frames per camera with dlib's embedder"
    )
    p.add_argument(
        "--workload",
        choices=["realistic", "light"],
        default="realistic",
        help="realistic: faces over real footage (see sauron.bench.realistic); light: the "
        "generated scene of sauron.bench.workload",
    )
    p.add_argument(
        "--clips", type=int, default=None, help="distinct clips (default: 3 realistic, 4 light)"
    )
    p.add_argument(
        "--clip-frames",
        type=int,
        default=None,
        help="frames of each clip (default: 300 realistic, 60 light)",
    )
    p.add_argument(
        "--baseline-frames",
        type=int,
        default=20,
        help="frames per camera of the bare face_recognition-style loop (HOG upsample 1, "
        "dlib embedding of every face, one core); 0 = skip it",
    )
    p.add_argument(
        "--min-frames", type=int, default=20, help="least frames per camera of a throughput run"
    )
    p.add_argument(
        "--no-kafka",
        dest="kafka",
        action="store_false",
        help="skip every run over Kafka (and the seed baseline)",
    )
    p.add_argument(
        "--no-embedded", dest="embedded", action="store_false", help="skip the embedded-bus runs"
    )
    p.add_argument("--no-seed", dest="seed", action="store_false", help="skip the seed")
    p.add_argument(
        "--no-separate-match",
        dest="separate_match",
        action="store_false",
        help="skip the Kafka runs with a match worker of its own (match.in_detect off)",
    )
    p.add_argument(
        "--no-dlib",
        dest="dlib",
        action="store_false",
        help="skip the floor runs with dlib's embedder",
    )
    p.add_argument(
        "--no-per-frame",
        dest="per_frame",
        action="store_false",
        help="skip the per-frame (frame partitioning) Kafka run",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke-size run (seconds): tiny workload, 1 worker, short runs",
    )
    return p


def _quick(args: argparse.Namespace) -> None:
    args.workers = [1]
    args.cameras = 2
    args.clips, args.clip_frames = 2, 12
    args.baseline_frames = 2
    args.seconds, args.paced_seconds, args.warmup = 1.0, 3.0, 1.0
    args.floor_frames, args.dlib_frames, args.min_frames = 8, 3, 8
    args.per_frame = False
    args.overload = 0.0
    args.warm_broker = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        _quick(args)
    realistic = args.workload == "realistic"
    args.clips = args.clips or (3 if realistic else 4)
    args.clip_frames = args.clip_frames or (300 if realistic else 60)
    args.floor_frames = args.floor_frames or (args.clip_frames - 5 if realistic else 60)
    if not 0 < args.load <= 3 or args.cameras < 1 or args.seconds <= 0:
        parser.error("--load must be in (0, 3], --cameras >= 1, --seconds > 0")
    from sauron.bench.report import render

    bench = Bench(args)
    result = bench.run()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(render(result, args.out / "pipeline.png"))
    print(f"wrote {args.out / 'pipeline.json'} and {args.out / 'pipeline.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
