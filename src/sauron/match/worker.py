"""``sauron worker match`` and ``sauron worker detect``: the Kafka worker processes.

A match worker is the match stage as a consumer-group member of its own. A detect worker
runs ``sauron.detect.worker``'s stage on the frames topic and, with ``match.in_detect``
(the default), this module's matching in the same process, which is why both workers'
processes are built here, above the two stages.

Every matcher reads the whole compacted watchlist topic (key = person name, value = the
person's embeddings, an empty value = removed) and keeps following it, so enrollments and
removals reach running matchers without a restart.

The frame inside a detections message is checked like the detect stage checks frames
before it is decoded for drawing; a message that fails goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import Message

from sauron import SauronError, codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import make_producer
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics, camera_partition
from sauron.bus.worker import Output, StageWorker
from sauron.config import Settings
from sauron.detect.stage import warm_up, worker_stage
from sauron.detect.worker import Matcher, check_frame, detect_stage_worker
from sauron.logs import setup_logging
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.metrics import Metrics, serve

log = logging.getLogger(__name__)


def follow_watchlist(settings: Settings, watchlist: Watchlist) -> TopicTail:
    """Keep ``watchlist`` in step with the watchlist topic (from its beginning)."""
    topic = Topics.from_config(settings.topics).watchlist

    def on_msg(msg: Message) -> None:
        name = (msg.key() or b"").decode("utf-8", "replace")
        value = msg.value()
        if not value:
            watchlist.remove(name)
            return
        try:
            watchlist.upsert(codec.decode_person(value))
        except codec.CodecError as exc:
            log.warning("watchlist entry %r ignored: %s", name, exc)

    tail = TopicTail(settings.bus, topic, on_msg)
    tail.start()
    return tail


def publish_person(settings: Settings, person: codec.Person | None, name: str) -> None:
    """Enroll (or with ``person=None`` remove) a person for every running matcher."""
    producer = make_producer(settings.bus)
    topic = Topics.from_config(settings.topics).watchlist
    value = codec.encode_person(person) if person is not None else None
    producer.produce(topic, key=name, value=value)
    left = producer.flush(settings.bus.connect_timeout_s)
    if left:
        raise RuntimeError(f"watchlist update for {name} was not acknowledged by Kafka")


def match_outputs(
    topics: Topics,
    stage: MatchStage,
    partitions: int,
    frame: codec.Frame,
    det: codec.Detections,
    timings: dict[str, float],
) -> list[Output]:
    """Name the faces of a frame: its annotated result (on the camera's partition of the
    annotated topic) and its new sightings."""
    result, sightings = stage.process(frame, det, timings)
    outs = [
        Output(
            topics.annotated,
            codec.encode_result(result),
            key=frame.camera,
            partition=camera_partition(frame.camera, partitions),
            captured_at=frame.captured_at,
        )
    ]
    outs += [
        Output(topics.sightings, codec.encode_sighting(ev), key=frame.camera) for ev in sightings
    ]
    return outs


def match_handler(settings: Settings, stage: MatchStage, partitions: int) -> Any:
    topics = Topics.from_config(settings.topics)
    max_pixels = settings.detect.max_frame_pixels

    def handle(value: bytes) -> list[Output]:
        frame, det, timings = codec.decode_detections(value)
        check_frame(frame, max_pixels)
        return match_outputs(topics, stage, partitions, frame, det, timings)

    return handle


def watchlist_from_topic(settings: Settings) -> tuple[Watchlist, TopicTail]:
    """A watchlist kept in step with the watchlist topic, read to its end first (or for
    twice the connect timeout, then matching starts with what was read)."""
    watchlist = Watchlist()
    tail = follow_watchlist(settings, watchlist)
    if not tail.caught_up.wait(settings.bus.connect_timeout_s * 2):
        log.warning("watchlist topic not read to its end yet; matching starts anyway")
    return watchlist, tail


class SeparateMatchOff(SauronError):
    """``sauron worker match`` while detect workers do the matching (``match.in_detect``)."""


def build_match_worker(
    settings: Settings, *, group: str | None = None, metrics: Metrics | None = None
) -> tuple[StageWorker, TopicTail]:
    if settings.match.in_detect:
        raise SeparateMatchOff(
            "match.in_detect is on (the default): detect workers name the faces and write "
            "the annotated topic themselves, so a match worker would have nothing to read. "
            "To run a separate match group, set match.in_detect: false (or "
            "SAURON_MATCH__IN_DETECT=false) for every detect and match worker"
        )
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    watchlist, tail = watchlist_from_topic(settings)
    stage = MatchStage(settings.match, watchlist)
    worker = StageWorker(
        settings,
        topic=topics.detections,
        name="match",
        group=group or settings.topics.name("match"),
        handler=match_handler(settings, stage, counts[topics.annotated]),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
    )
    return worker, tail


def run_match_worker(
    settings: Settings, *, group: str | None = None, metrics_port: int | None = None
) -> None:
    """One match worker in this process until SIGTERM/SIGINT (then a clean leave)."""
    metrics = Metrics()
    port = settings.metrics.port if metrics_port is None else metrics_port
    server = serve(metrics, port, settings.metrics.host)
    worker, tail = build_match_worker(settings, group=group, metrics=metrics)
    stop_on_signals(worker.stop_event)
    try:
        worker.run()
    finally:
        tail.stop()
        if server is not None:
            server.stop()


def build_detect_worker(
    settings: Settings,
    *,
    group: str | None = None,
    metrics: Metrics | None = None,
    on_stale: Callable[[codec.Frame], None] | None = None,
) -> StageWorker:
    """A detect worker; with ``match.in_detect`` (the default) it names the faces too.
    Its models are loaded and warmed before it joins the group."""
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    stage = worker_stage(settings)
    log.info("detect: models loaded and warmed in %.2f s", warm_up(stage))
    matcher: Matcher | None = None
    tail: TopicTail | None = None
    if settings.match.in_detect:
        watchlist, tail = watchlist_from_topic(settings)
        match = MatchStage(settings.match, watchlist)
        matcher = partial(match_outputs, topics, match, counts[topics.annotated])
    worker = detect_stage_worker(
        settings,
        stage,
        counts[topics.detections],
        group=group,
        metrics=metrics,
        matcher=matcher,
        on_stale=on_stale,
    )
    if tail is not None:
        worker.on_stop.append(tail.stop)
    return worker


def run_detect_worker(
    settings: Settings,
    *,
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
        group=group,
        metrics=metrics,
        on_stale=signals.report_stale if signals is not None else None,
    )
    if signals is not None:
        worker.on_ready.append(signals.ready[index].set)
    stop_on_signals(worker.stop_event)
    if parent is not None:
        _watch_parent(parent, worker.stop_event)
    try:
        worker.run()
    finally:
        if server is not None:
            server.stop()


def stop_on_signals(event: Any) -> None:
    """SIGTERM/SIGINT set ``event`` (the worker finishes its batch and leaves the group)."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch and leaving the group", signum)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _watch_parent(parent: int, event: threading.Event) -> None:
    """Stop cleanly once the process that spawned us is gone (killed without cleanup)."""

    def watch() -> None:
        while not event.wait(1.0):
            if os.getppid() != parent:
                log.warning("parent process %d is gone: stopping", parent)
                event.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class DetectSignals:
    """What spawned detect workers tell the process that started them: one ``ready``
    event each, and a queue of (camera, frame number) of the frames dropped as stale."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready = [ctx.Event() for _ in range(n)]
        self.stale: Any = ctx.Queue()

    def report_stale(self, frame: codec.Frame) -> None:
        self.stale.put((frame.camera, frame.number))

    def wait_ready(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every worker; how many are ready."""
        deadline = time.monotonic() + timeout
        for ev in self.ready:
            ev.wait(max(0.0, deadline - time.monotonic()))
        return sum(ev.is_set() for ev in self.ready)

    def drain_stale(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        while True:
            try:
                out.append(self.stale.get_nowait())
            except queue.Empty:
                return out


def _process_main(
    settings_json: str,
    group: str | None,
    metrics_port: int | None,
    parent: int,
    signals: DetectSignals | None,
    index: int,
) -> None:
    setup_logging()
    run_detect_worker(
        Settings.model_validate_json(settings_json),
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
    group: str | None = None,
    metrics_base: int = 0,
    signals: DetectSignals | None = None,
) -> list[Any]:
    """Start ``n`` detect worker processes (one core each); returns the processes.

    With ``metrics_base`` > 0, process i serves its metrics on port ``metrics_base + i``.
    ``signals`` (made for ``n`` workers) carries their readiness and stale drops back.
    """
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_process_main,
            args=(
                settings.model_dump_json(),
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
