"""The consume-transform-produce worker that each stage process runs over Kafka.

Delivery (docs/reliability.md has the whole story):

- At-least-once (default): an input offset is stored only once every output produced
  from it, and from every earlier input of the same partition, was acknowledged; offsets
  are committed in the background and synchronously when partitions are revoked or the
  worker stops. A worker that dies loses nothing: its partitions move to the rest of the
  group, which re-reads from the last committed offsets (so some outputs may come twice).
- Exactly-once (``bus.exactly_once``): each batch of inputs is one Kafka transaction
  holding its outputs (detections, annotated frames, sightings, dead letters) and the
  input offsets; readers use ``read_committed``. A dead worker's open transaction is
  aborted by the brokers after ``bus.transaction_timeout_s``.

An input a handler cannot process (corrupt frame, unknown message version, too large)
goes to the dead-letter topic with the reason in its headers; the worker carries on.

This module holds the consuming side: the loops, the handling of one input, the
assignment. Beside it: ``handler.py`` (what a stage gives the worker), ``delivery.py``
(producing, at-least-once delivery), ``offsets.py`` (offsets stored and rewound),
``transactions.py`` (exactly-once), ``deadletters.py`` and ``worker_metrics.py`` (counts,
heartbeat, lag).

Staying live: a frame of a live camera (it carries :data:`~sauron.bus.client.LIVE_HEADER`,
and its message timestamp is its capture time) whose result would be older than
``live_max_age_s`` (its age when taken plus the recent handling time, at most half the
limit) is dropped and counted as ``stale`` before anything of it is decoded, so a
worker that fell behind (a burst, a machine busy with other work, more cameras than it
can take) skips the backlog in a moment and is live again, instead of delivering every
later frame late.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from sauron.bus.client import (
    LIVE_HEADER,
    MAX_VALUE_BYTES,
    check_reachable,
    close_consumer,
    commit_final,
    consume_ready,
    make_consumer,
    make_producer,
)
from sauron.bus.deadletters import DeadLetters, Origin
from sauron.bus.delivery import Delivery
from sauron.bus.handler import Handler, Output, Skip
from sauron.bus.offsets import OffsetTracker
from sauron.bus.topics import Topics
from sauron.bus.transactions import Handled, Transactions
from sauron.bus.worker_metrics import WorkerMetrics, WorkerStats
from sauron.config import Settings
from sauron.metrics import Metrics

__all__ = ["Handler", "Output", "Skip", "StageWorker", "WorkerStats"]

log = logging.getLogger(__name__)


class StageWorker:
    """Consume-transform-produce loop of one stage, one process, one consumer-group member.

    ``handler`` turns an input message value into outputs. If it raises :class:`Skip`
    the input is dropped and counted; any other exception sends the input to the
    dead-letter topic with the reason in its headers, and the worker carries on.
    ``stop_event`` ends the loop after the current batch: its outputs are flushed (or its
    transaction committed), offsets committed and the group left; then the ``on_stop``
    callables run (e.g. stopping a watchlist reader the handler uses). With
    ``live_max_age_s``, inputs marked live that are older than that are dropped as
    ``stale`` unhandled, and told to ``on_stale``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str,
        group: str,
        handler: Handler,
        name: str,
        batch_size: int = 8,
        metrics: Metrics | None = None,
        exactly_once: bool | None = None,
        live_max_age_s: float | None = None,
        on_stale: Callable[[Message], None] | None = None,
    ) -> None:
        self.settings = settings
        self.bus = settings.bus
        self.topic = topic
        self.group = group
        self.handler = handler
        self.name = name
        self.batch_size = batch_size
        self.live_max_age_s = live_max_age_s
        self.on_stale = on_stale
        self._handle_s = 0.0  # moving average of the handler's wall time per input
        self.exactly_once = settings.bus.exactly_once if exactly_once is None else exactly_once
        self.deadletter = Topics.from_config(settings.topics).deadletter
        self.dead = DeadLetters(self.deadletter, name)
        self.metrics = metrics or Metrics()
        self.meter = WorkerMetrics(name, group, self.metrics)
        self.stats = self.meter.stats
        self.health = self.meter.health
        self.stop_event = threading.Event()
        self.on_stop: list[Callable[[], None]] = []
        # Set once the group has given this member its first assignment (an empty one
        # too: a member beyond the partition count is a ready standby); ``on_ready``
        # callables run then, in the consuming thread.
        self.ready = threading.Event()
        self.on_ready: list[Callable[[], None]] = []
        self.partitions: set[tuple[str, int]] = set()

    # ---- one input

    def _stale(self, msg: Message) -> bool:
        """A live input whose result would be older than ``live_max_age_s``: its age (by
        its message timestamp) plus the recent handling time, counted as at most half the
        limit, so a fresh input is always handled however slow the last ones were."""
        if self.live_max_age_s is None:
            return False
        headers = msg.headers()
        if not headers or (LIVE_HEADER, b"1") not in headers:
            return False
        kind, ts = msg.timestamp()
        if kind == TIMESTAMP_NOT_AVAILABLE or ts <= 0:
            return False
        ahead = min(self._handle_s, self.live_max_age_s / 2)
        return time.time() - ts / 1000.0 + ahead > self.live_max_age_s

    def _handle(self, msg: Message) -> Handled:
        """(outputs, dead-letter reason, drop reason) for one input message."""
        if self._stale(msg):
            if self.on_stale is not None:
                self.on_stale(msg)
            return [], None, "stale"
        t0 = time.perf_counter()
        try:
            outputs = self.handler(msg.value() or b"")
        except Skip as exc:
            return [], None, exc.reason
        except Exception as exc:  # any failure on one message must not stop the stream
            return [], f"{type(exc).__name__}: {exc}", None
        finally:
            took = time.perf_counter() - t0
            self._handle_s += 0.2 * (took - self._handle_s)
            self.meter.handled(took)
        for out in outputs:
            if out.value is not None and len(out.value) > MAX_VALUE_BYTES:
                return (
                    [],
                    (
                        f"OutputTooLarge: a {len(out.value)}-byte message for {out.topic} is "
                        f"over the {MAX_VALUE_BYTES}-byte limit"
                    ),
                    None,
                )
        return outputs, None, None

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            self.meter.error("consumer")
            log.warning("%s: consumer error: %s", self.name, err)
        return False

    # ---- at-least-once

    def _process(self, delivery: Delivery, tracker: OffsetTracker, msg: Message) -> None:
        self.meter.consumed()
        origin = Origin.of(msg)
        outputs, dead, drop = self._handle(msg)
        if drop is not None:
            self.meter.dropped(drop)
            tracker.add(origin.topic, origin.partition, origin.offset, 0)
            return
        if dead is not None:
            self.meter.dead(dead)
            outputs = [self.dead.letter(origin, dead)]
            on_complete = None
        else:
            captured = next((o.captured_at for o in outputs), None)

            def on_complete() -> None:
                self.meter.processed(captured)

        done = tracker.add(origin.topic, origin.partition, origin.offset, len(outputs), on_complete)
        for out in outputs:
            delivery.emit(out, done, origin)

    def _loop_at_least_once(self, consumer: Consumer, producer: Producer) -> None:
        tracker = OffsetTracker(consumer)
        delivery = Delivery(producer, self.meter, self.dead)

        def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
            delivery.flush(30)
            try:
                c.commit(asynchronous=False)
            except KafkaException as exc:
                log.debug("%s: commit on revoke: %s", self.name, exc)
            tracker.forget(parts)
            self._on_unassign(parts)

        def on_lost(_c: Consumer, parts: list[TopicPartition]) -> None:
            tracker.forget(parts)
            self._on_unassign(parts)

        consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=on_revoke, on_lost=on_lost
        )
        try:
            while not self.stop_event.is_set():
                for msg in consume_ready(consumer, self.batch_size):
                    if self._usable(msg):
                        self._process(delivery, tracker, msg)
                delivery.drain_retries()
                producer.poll(0)
                self.meter.tick(consumer, producer)
        finally:
            self.health.state = "stopping"
            left = delivery.flush(30)
            if left:
                log.warning(
                    "%s: %d output(s) not acknowledged; their inputs will be redone",
                    self.name,
                    left,
                )
            commit_final(consumer, self.name)

    # ---- exactly-once

    def _loop_exactly_once(self, consumer: Consumer, producer: Producer) -> None:
        transactions = Transactions(
            consumer,
            producer,
            bus=self.bus,
            meter=self.meter,
            dead=self.dead,
            handle=self._handle,
            stop_event=self.stop_event,
        )
        transactions.begin()
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=lambda _c, p: self._on_unassign(p),
            on_lost=lambda _c, p: self._on_unassign(p),
        )
        try:
            while not self.stop_event.is_set():
                msgs = [m for m in consume_ready(consumer, self.batch_size) if self._usable(m)]
                if msgs:
                    transactions.batch(msgs)
                self.meter.tick(consumer, producer)
        finally:
            self.health.state = "stopping"

    # ---- assignment

    def _on_assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        """Incremental (cooperative-sticky) assignment: note it, and report readiness."""
        self.partitions.update((tp.topic, tp.partition) for tp in parts)
        log.info(
            "%s: assigned %s; holding %d partition(s)",
            self.name,
            [tp.partition for tp in parts] or "nothing new",
            len(self.partitions),
        )
        if not self.ready.is_set():
            self.ready.set()
            self.health.beat(assigned=len(self.partitions), group=self.group)
            for fn in self.on_ready:
                fn()

    def _on_unassign(self, parts: list[TopicPartition]) -> None:
        self.partitions.difference_update((tp.topic, tp.partition) for tp in parts)
        self.meter.forget_lag(parts)

    def run(self) -> WorkerStats:
        check_reachable(self.bus)
        extra: dict[str, Any] = {}
        cextra: dict[str, Any] = {}
        if self.exactly_once:
            extra = {
                "transactional.id": f"{self.group}.{self.name}.{uuid.uuid4().hex[:12]}",
                "transaction.timeout.ms": int(self.bus.transaction_timeout_s * 1000),
            }
            cextra = {"enable.auto.commit": False}
        cextra["client.id"] = f"{self.name}@{socket.gethostname()}:{os.getpid()}"
        producer = make_producer(self.bus, **extra)
        consumer = make_consumer(self.bus, self.group, **cextra)
        mode = "exactly-once" if self.exactly_once else "at-least-once"
        log.info("%s: consuming %s as group %s (%s)", self.name, self.topic, self.group, mode)
        self.health.beat(group=self.group, mode=mode)
        try:
            if self.exactly_once:
                self._loop_exactly_once(consumer, producer)
            else:
                self._loop_at_least_once(consumer, producer)
        except BaseException:
            self.health.state = "failed"
            raise
        finally:
            close_consumer(consumer, self.name)  # leaves the group: its partitions move now
            for fn in self.on_stop:
                fn()
            if self.health.state != "failed":
                self.health.state = "stopped"
            log.info(
                "%s: stopped after %d in, %d done, %d dead letters, %d dropped",
                self.name,
                self.stats.consumed,
                self.stats.processed,
                self.stats.dead_letters,
                self.stats.dropped,
            )
        return self.stats
