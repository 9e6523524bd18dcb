"""One measured run of a pipeline: start it, warm it up, feed it, drain it, summarize."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from sauron_bench.measure import Collector, Replayer, ResourceMonitor, RunResult, summarize
from sauron_bench.product_pipelines import BenchError, Sink
from sauron_bench.workload import Workload

log = logging.getLogger(__name__)

WARMUP_FRAMES = 5  # per camera: models loaded, groups formed, every camera's tracks started


class Pipeline(Protocol):
    name: str
    collector: Collector

    def start(self) -> Any: ...

    def sink_factory(self) -> Sink: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Feed:
    """What to feed: ``frames`` per camera as fast as possible, or ``fps`` per camera for
    ``seconds``."""

    frames: int | None = None
    fps: float | None = None
    seconds: float | None = None
    drain_s: float = 60.0
    warmup_s: float = 0.0  # paced: latency percentiles leave out the first seconds

    @property
    def mode(self) -> str:
        return "flood" if self.fps is None else "paced"


def measure(
    pipe: Pipeline,
    workload: Workload,
    cameras: list[str],
    feed: Feed,
    *,
    workers: int,
    tracking: bool,
    embedder: str,
    broker_pid: int | None = None,
    label: str | None = None,
) -> RunResult:
    """Run ``pipe`` over the workload and return what it measured; always closes ``pipe``."""
    name = label or pipe.name
    log.info(
        "run %s: %d worker(s), %d cameras, %s%s",
        name,
        workers,
        len(cameras),
        feed.mode,
        f" at {feed.fps:g} fps per camera" if feed.fps else "",
    )
    warm = Replayer(workload, cameras, pipe.sink_factory, frames=WARMUP_FRAMES, fps=None)
    replay = Replayer(
        workload,
        cameras,
        pipe.sink_factory,
        frames=feed.frames,
        fps=feed.fps,
        start_number=WARMUP_FRAMES,
        duration_s=feed.seconds,
    )
    preload = bool(getattr(pipe, "preload", False))
    extra: dict[str, Any] = {}
    t_setup = time.monotonic()
    try:
        if preload:  # every frame published before any worker starts (the seed baseline)
            pipe.prepare()  # type: ignore[attr-defined]
            warm.start().join()
            replay.start().join()
            extra["producer_fps"] = round(
                replay.sent / max(1e-9, replay.finished_at - replay.started_at), 1
            )
            pipe.start()
        else:
            pipe.start()
            warm.start().join()
        if not pipe.collector.wait_settled(warm.sent, 180) and not len(pipe.collector):
            raise BenchError(
                f"{name}: warm-up frames did not come out within 180 s "
                f"({len(pipe.collector)} of {warm.sent})"
            )
        setup_s = time.monotonic() - t_setup
        lag_sampler = None
        if hasattr(pipe, "lag_sampler"):
            lag_sampler = pipe.lag_sampler(
                lambda: replay.sent - pipe.collector.count(WARMUP_FRAMES)
            ).start()
        monitor = ResourceMonitor(broker_pid).start()
        if not preload:
            replay.start().join()
        # all frames out, or nothing new for 3 s (the rest were dropped by a policy)
        drained = pipe.collector.wait_settled(replay.sent, feed.drain_s, 3.0, WARMUP_FRAMES)
        usage = monitor.stop()
        lag = lag_sampler.stop() if lag_sampler is not None else {}
        records = [r for r in pipe.collector.take() if r.number >= WARMUP_FRAMES]
    finally:
        pipe.close()
        del warm  # their sinks hold Kafka clients: let them go with the pipeline
        gc.collect()
    feed_s = replay.finished_at - replay.started_at
    offered = replay.sent / feed_s if feed.fps is not None and feed_s > 0 else None
    extra.update(
        {
            "sent": replay.sent,
            "delivered": len(records),
            "undelivered": replay.sent - len(records),
            "drained": drained,
            "setup_s": round(setup_s, 1),
        }
    )
    if hasattr(pipe, "dropped"):
        extra["dropped"] = pipe.dropped
    result = summarize(
        name,
        records,
        usage,
        workers=workers,
        mode=feed.mode,
        tracking=tracking,
        embedder=embedder,
        cameras=len(cameras),
        offered_fps=offered,
        lag=lag,
        extra=extra,
        warmup_s=feed.warmup_s,
    )
    log.info(
        "run %s: %d worker(s): %.1f frames/s, latency p50 %s ms p99 %s ms, %d undelivered",
        name,
        workers,
        result.fps,
        result.latency_ms.get("p50"),
        result.latency_ms.get("p99"),
        extra["undelivered"],
    )
    return result
