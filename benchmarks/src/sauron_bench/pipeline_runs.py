"""The runs of ``sauron bench pipeline``: the floor, throughput, the seed, latency.

:class:`Bench` holds the options, the workload and every result of one benchmark run, in
the order ``sauron_bench.pipeline_command`` (its options, what it measures) starts them;
``sauron_bench.report`` turns them into the JSON document, the table and the figure.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from sauron.codec import Person
from sauron_bench.bare_loop import FloorRun, agreement, run_floor
from sauron_bench.measure import RunResult, allowed_cores, cpu_name
from sauron_bench.product_pipelines import (
    EmbeddedPipeline,
    KafkaPipeline,
    embedded_settings,
    kafka_settings,
)
from sauron_bench.runner import Feed, measure
from sauron_bench.workload import Workload, camera_names, make_workload, watchlist_people

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

    def _floor_pair(
        self, people: list[Person], embedder: str, frames: int, name: str
    ) -> tuple[FloorRun, FloorRun]:
        """The floor with tracking and with every face embedded, both recorded."""
        assert self.workload is not None
        track, per = (
            run_floor(
                self.workload,
                self.cameras,
                people,
                embedder=embedder,
                tracking=tracking,
                frames_per_camera=frames,
            )
            for tracking in (True, False)
        )
        track.result.name, per.result.name = name, f"{name}-per-frame"
        self._record(track.result)
        self._record(per.result)
        return track, per

    def floor(self) -> None:
        a = self.args
        track, per = self._floor_pair(self.people, self.embedder, a.floor_frames, "floor")
        self.floor_track, self.floor_per = track, per
        self.out["tracking"] = {self.embedder: self._tracking_entry(track, per)}
        if a.baseline_frames > 0:
            from sauron_bench.bare_loop import run_baseline

            assert self.workload is not None
            self.baseline = self._record(
                run_baseline(self.workload, self.cameras, self.people, a.baseline_frames)
            )
        if a.dlib and self.embedder != "dlib":
            dt, dp = self._floor_pair(watchlist_people("dlib"), "dlib", a.dlib_frames, "floor-dlib")
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

    def _kafka_pipe(self, workers: int, partitions: int, **options: Any) -> KafkaPipeline:
        """The Kafka pipeline over this run's broker, with its embedder and batch size."""
        assert self.bootstrap is not None
        settings = kafka_settings(
            self.bootstrap,
            partitions=partitions,
            embedder=self.embedder,
            batch_size=self.args.batch_size,
            **options,
        )
        return KafkaPipeline(settings, workers, self.people)

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
        pipe = self._kafka_pipe(
            workers,
            len(self.cameras),
            tracking=tracking,
            partitioning=partitioning,
            in_detect=in_detect,
        )
        feed = Feed(frames=self._flood_frames(est))
        return self._measure(pipe, feed, workers, tracking=tracking, label=label)

    def embedded_flood(self, workers: int) -> RunResult:
        est = self.floor_track.result.fps * workers
        settings = embedded_settings(tracking=True, embedder=self.embedder)
        pipe = EmbeddedPipeline(settings, workers, self.people, block=True)
        return self._measure(pipe, Feed(frames=self._flood_frames(est)), workers)

    def seed(self, workers: int) -> RunResult:
        from sauron_bench.seed_pipeline import SeedPipeline

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
        pipe = self._kafka_pipe(
            workers,
            len(cameras),
            tracking=True,
            max_frame_age_s=max_frame_age_s,
            in_detect=in_detect,
        )
        return self._measure(pipe, self._paced_feed(fps), workers, cameras=cameras, label=label)

    def embedded_paced(
        self, workers: int, cameras: list[str], fps: float, label: str = "embedded-paced"
    ) -> RunResult:
        settings = embedded_settings(tracking=True, embedder=self.embedder)
        pipe = EmbeddedPipeline(settings, workers, self.people, block=False)
        return self._measure(pipe, self._paced_feed(fps), workers, cameras=cameras, label=label)

    # ---- the whole run ----------------------------------------------------------------

    def run(self) -> None:
        """Every run, in order; ``sauron_bench.report.assemble`` makes the document."""
        a = self.args
        t0 = time.monotonic()
        self.out["machine"] = _machine()
        if a.workload == "light":
            self.workload = make_workload(clips=a.clips, frames=a.clip_frames)
        else:
            from sauron_bench.realistic import make_realistic_workload

            self.workload = make_realistic_workload(cameras=a.clips, frames=a.clip_frames)
        self.people = watchlist_people(self.embedder)
        self.floor()
        broker = None
        if a.kafka and self.bootstrap is None:
            from sauron_bench.broker import LocalBroker

            broker = LocalBroker().start()
            self.bootstrap, self.broker_pid = broker.bootstrap, broker.pid
        try:
            if a.kafka and self.bootstrap is not None and a.warm_broker > 0:
                from sauron_bench.broker import warm_up

                warm_up(self.bootstrap, a.warm_broker)
            self._pipelines()
        finally:
            if broker is not None:
                broker.stop()
        self.out["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
        self.out["seconds"] = round(time.monotonic() - t0, 1)

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
        variants: list[tuple[str, dict[str, Any]]] = []
        if a.kafka and a.separate_match:  # the match stage as a consumer group of its own
            variants.append(("kafka-separate-match", {"in_detect": False}))
        if a.kafka and a.per_frame:  # no tracking, frames spread over partitions
            variants.append(("kafka-per-frame", {"tracking": False, "partitioning": "frame"}))
        for label, options in variants:
            for w in sorted({1, self.wmax}):
                self._try(f"{label} {w}", self.kafka_flood, w, label=label, **options)
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
