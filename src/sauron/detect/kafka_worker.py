"""The detect stage as a Kafka worker: frames in, detections (or named faces) out.

``sauron worker detect`` runs one (:func:`run_detect_worker`) or starts several processes
(:func:`spawn_detect_workers`); ``sauron run --bus kafka`` starts them too. With
``match.in_detect`` (the default) a detect worker also names the faces and writes the
annotated frames and sightings; what names them is handed in as a :data:`NamerFactory`
(``sauron.match.kafka_worker.topic_namer``), since detect comes before match and does not
import it.

Every frame is checked before any pixel is decoded (:mod:`sauron.detect.frame_checks`); a
refused frame lands in the dead-letter topic with the reason. With
``detect.max_frame_age_s`` set, frames older than that are dropped and counted instead of
detected, so a worker that fell behind catches up; frames of live cameras are dropped so
once older than ``detect.live_frame_age_s`` (by default), before they are decoded
(:class:`sauron.bus.worker.StageWorker`).

A worker is ready before it joins the group: its models are loaded and have run once on
a dummy frame (:func:`sauron.detect.stage.warm_up`), so the first real frame pays no
start-up cost.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from typing import Any

from sauron import SauronError, codec
from sauron.bus.admin import ensure_topics
from sauron.bus.process import stop_on_signals, watch_parent
from sauron.bus.topics import Topics, frame_partition
from sauron.bus.worker import Output, Skip, StageWorker
from sauron.config import Settings
from sauron.detect.frame_checks import check_frame
from sauron.detect.stage import DetectStage, warm_up, worker_stage
from sauron.logs import setup_logging
from sauron.metrics import Metrics, serve
from sauron.types import Detections, Frame

log = logging.getLogger(__name__)

#: Names the faces of a frame: its outputs (the annotated result, the sightings).
Matcher = Callable[[Frame, Detections, dict[str, float]], list[Output]]
#: Makes, in the worker's own process, what names its faces (``match.in_detect``): given
#: the settings and the annotated topic's partition count, the matcher and what stops it.
NamerFactory = Callable[[Settings, int], tuple[Matcher, Callable[[], None]]]


def detect_handler(
    settings: Settings,
    stage: DetectStage,
    partitions: int,
    matcher: Matcher | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> Any:
    """Frames in, detections out; with a ``matcher`` (``match.in_detect``), named faces
    out: the annotated result and the sightings, as a match worker would write them.
    ``on_stale`` is told of every frame dropped for its age (``sauron run`` counts them
    per camera)."""
    topics = Topics.from_config(settings.topics)
    mode = settings.topics.partitioning
    max_age = settings.detect.max_frame_age_s
    max_pixels = settings.detect.max_frame_pixels

    def handle(value: bytes) -> list[Output]:
        frame = codec.decode_frame(value)
        check_frame(frame, max_pixels)
        if max_age is not None and time.time() - frame.captured_at > max_age:
            if on_stale is not None:
                on_stale(frame)
            raise Skip("stale", f"frame older than {max_age} s")
        det, timings = stage.process(frame)
        if matcher is not None:
            return matcher(frame, det, timings)
        return [
            Output(
                topics.detections,
                codec.encode_detections(frame, det, timings),
                key=frame.camera,
                partition=frame_partition(frame.camera, frame.number, partitions, mode),
                captured_at=frame.captured_at,
            )
        ]

    return handle


def build_detect_worker(
    settings: Settings,
    *,
    namer: NamerFactory | None,
    group: str | None = None,
    metrics: Metrics | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> StageWorker:
    """A detect worker; with ``match.in_detect`` (the default) ``namer`` names the faces
    too. Its models are loaded and warmed before it joins the group."""
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    stage = worker_stage(settings)
    log.info("detect: models loaded and warmed in %.2f s", warm_up(stage))
    matcher: Matcher | None = None
    stop: Callable[[], None] | None = None
    if settings.match.in_detect:
        if namer is None:
            raise SauronError(
                "match.in_detect is on: a detect worker names the faces, so it needs a namer "
                "(sauron.match.kafka_worker.topic_namer)"
            )
        matcher, stop = namer(settings, counts[topics.annotated])

    def stale(msg: Any) -> None:  # a live frame the worker dropped unread for its age
        if on_stale is not None:
            with contextlib.suppress(codec.CodecError):
                on_stale(codec.decode_frame(msg.value() or b""))

    worker = StageWorker(
        settings,
        topic=topics.frames,
        name="detect",
        group=group or settings.topics.name("detect"),
        handler=detect_handler(settings, stage, counts[topics.detections], matcher, on_stale),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
        live_max_age_s=settings.detect.live_frame_age_s,
        on_stale=stale,
    )
    if stop is not None:
        worker.on_stop.append(stop)
    return worker


def run_detect_worker(
    settings: Settings,
    *,
    namer: NamerFactory | None,
    group: str | None = None,
    metrics_port: int | None = None,
    parent: int | None = None,
    signals: DetectSignals | None = None,
    index: int = 0,
) -> None:
    """One detect worker in this process until SIGTERM/SIGINT (or ``parent`` is gone).

    On the signal the current batch is finished (its outputs flushed, or its transaction
    committed), offsets are committed and the group is left, then the function returns.
    With ``signals`` (``sauron run``) the worker reports when it is ready (models warm,
    first assignment received) and every frame it drops as stale.
    """
    metrics = Metrics()
    port = settings.metrics.port if metrics_port is None else metrics_port
    server = serve(metrics, port, settings.metrics.host)
    worker = build_detect_worker(
        settings,
        namer=namer,
        group=group,
        metrics=metrics,
        on_stale=signals.report_stale if signals is not None else None,
    )
    if signals is not None:
        worker.on_ready.append(signals.ready[index].set)
    stop_on_signals(worker.stop_event)
    if parent is not None:
        watch_parent(parent, worker.stop_event)
    try:
        worker.run()
    finally:
        if server is not None:
            server.stop()


class DetectSignals:
    """What spawned detect workers tell the process that started them: one ``ready``
    event each, and a queue of (camera, frame number) of the frames dropped as stale."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready = [ctx.Event() for _ in range(n)]
        self.stale: Any = ctx.Queue()

    def report_stale(self, frame: codec.Frame) -> None:
        self.stale.put((frame.camera, frame.number))

    def drain_stale(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        while True:
            try:
                out.append(self.stale.get_nowait())
            except queue.Empty:
                return out


def _process_main(
    settings_json: str,
    namer: NamerFactory | None,
    group: str | None,
    metrics_port: int | None,
    parent: int,
    signals: DetectSignals | None,
    index: int,
) -> None:
    setup_logging()
    run_detect_worker(
        Settings.model_validate_json(settings_json),
        namer=namer,
        group=group,
        metrics_port=metrics_port,
        parent=parent,
        signals=signals,
        index=index,
    )


def spawn_detect_workers(
    settings: Settings,
    n: int,
    *,
    namer: NamerFactory | None,
    group: str | None = None,
    metrics_base: int = 0,
    signals: DetectSignals | None = None,
) -> list[Any]:
    """Start ``n`` detect worker processes (one core each); returns the processes.

    With ``metrics_base`` > 0, process i serves its metrics on port ``metrics_base + i``.
    ``signals`` (made for ``n`` workers) carries their readiness and stale drops back.
    ``namer`` (a module-level function: it travels to each process by name) names the
    faces with ``match.in_detect``.
    """
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_process_main,
            args=(
                settings.model_dump_json(),
                namer,
                group,
                metrics_base + i if metrics_base else 0,
                os.getpid(),
                signals,
                i,
            ),
            name=f"sauron-detect-{i}",
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    return procs
