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
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from sauron import SauronError
from sauron.bus.client import (
    LIVE_HEADER,
    MAX_VALUE_BYTES,
    PURGED,
    RETRIABLE,
    check_reachable,
    consume_ready,
    make_consumer,
    make_producer,
)
from sauron.bus.topics import Topics
from sauron.config import Settings
from sauron.metrics import Metrics

log = logging.getLogger(__name__)


class Skip(SauronError):
    """Raised by a handler for an input it drops on purpose (e.g. a stale frame).

    The input is counted in ``sauron_frames_dropped{reason}``, its offset is committed and
    nothing goes to the dead-letter topic.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class Output:
    """One message a stage wants produced; ``captured_at`` feeds the latency histogram."""

    topic: str
    value: bytes | None
    key: str | bytes | None = None
    partition: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    captured_at: float | None = None


# ---------------------------------------------------------------------------- offsets


@dataclass
class _Entry:
    offset: int
    remaining: int
    on_complete: Callable[[], None] | None


class OffsetTracker:
    """Stores an input offset once all outputs of it, and of earlier inputs, are delivered."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._pending: dict[tuple[str, int], deque[_Entry]] = {}

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        outputs: int,
        on_complete: Callable[[], None] | None = None,
    ) -> Callable[[], None]:
        """Track one input; call the returned function once per delivered output."""
        entry = _Entry(offset, outputs, on_complete)
        self._pending.setdefault((topic, partition), deque()).append(entry)

        def done() -> None:
            entry.remaining -= 1
            if entry.remaining == 0 and entry.on_complete is not None:
                entry.on_complete()
            self._advance(topic, partition)

        if outputs == 0:
            self._advance(topic, partition)
        return done

    def _advance(self, topic: str, partition: int) -> None:
        queue = self._pending.get((topic, partition))
        last = None
        while queue and queue[0].remaining <= 0:
            last = queue.popleft().offset
        if last is not None:
            try:
                self.consumer.store_offsets(offsets=[TopicPartition(topic, partition, last + 1)])
            except KafkaException as exc:  # partition revoked meanwhile: its new owner redoes it
                log.debug("could not store offset %s[%d]@%d: %s", topic, partition, last, exc)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)

    @property
    def in_flight(self) -> int:
        return sum(len(q) for q in self._pending.values())


# ---------------------------------------------------------------------------- stage worker

Handler = Callable[[bytes], list[Output]]


@dataclass
class WorkerStats:
    consumed: int = 0
    processed: int = 0  # inputs whose outputs were all acknowledged (or committed)
    produced: int = 0
    dead_letters: int = 0
    dropped: int = 0
    delivery_errors: int = 0
    aborted: int = 0  # transactions aborted (exactly-once)


@dataclass(frozen=True)
class _Origin:
    """The input an output came from, for dead letters of failed deliveries."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, msg: Message) -> _Origin:
        key = msg.key()
        return cls(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            key.encode() if isinstance(key, str) else key,
            msg.value() or b"",
        )


@dataclass
class _Tally:
    """What one batch did, applied to the stats only once the batch is committed."""

    processed: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    topics: Counter[str] = field(default_factory=Counter)
    ages: list[float] = field(default_factory=list)


def _reason_label(reason: str) -> str:
    """A bounded metric label from a reason text: its leading exception class name."""
    head = reason.split(":", 1)[0].strip()
    return head if head.isidentifier() and len(head) <= 40 else "other"


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
        self.stats = WorkerStats()
        self.stop_event = threading.Event()
        self.metrics = metrics or Metrics()
        self.health = self.metrics.health.component(name)
        self._retry: deque[tuple[Output, Callable[[], None], _Origin]] = deque()
        self._lag_at = 0.0
        self._lag_labels: set[tuple[str, str]] = set()
        self.on_stop: list[Callable[[], None]] = []
        # Set once the group has given this member its first assignment (an empty one
        # too: a member beyond the partition count is a ready standby); ``on_ready``
        # callables run then, in the consuming thread.
        self.ready = threading.Event()
        self.on_ready: list[Callable[[], None]] = []
        self.partitions: set[tuple[str, int]] = set()

    # ---- counting

    def _count_in(self) -> None:
        self.stats.consumed += 1
        self.metrics.frames_in.labels(self.name).inc()

    def _count_dead(self, reason: str, n: int = 1) -> None:
        self.stats.dead_letters += n
        self.metrics.dead_letters.labels(self.name, _reason_label(reason)).inc(n)

    def _count_dropped(self, reason: str, n: int = 1) -> None:
        self.stats.dropped += n
        self.metrics.dropped.labels(self.name, reason).inc(n)

    def _count_processed(self, captured_at: float | None) -> None:
        self.stats.processed += 1
        self.metrics.frames_out.labels(self.name).inc()
        if captured_at is not None:
            self.metrics.latency.labels(self.name).observe(max(0.0, time.time() - captured_at))

    def _count_error(self, kind: str) -> None:
        self.metrics.errors.labels(self.name, kind).inc()

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

    def _handle(self, msg: Message) -> tuple[list[Output], str | None, str | None]:
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
            self.metrics.process_time.labels(self.name).observe(took)
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

    def _dead_output(self, origin: _Origin, reason: str) -> Output:
        log.warning(
            "%s: %s[%d]@%d to dead letters: %s",
            self.name,
            origin.topic,
            origin.partition,
            origin.offset,
            reason,
        )
        headers = {
            "reason": reason[:1000],
            "stage": self.name,
            "topic": origin.topic,
            "partition": str(origin.partition),
            "offset": str(origin.offset),
        }
        value = origin.value
        if len(value) > MAX_VALUE_BYTES:
            headers["truncated_from"] = str(len(value))
            value = value[:MAX_VALUE_BYTES]
        return Output(self.deadletter, value, key=origin.key, headers=headers)

    def _send(self, producer: Producer, out: Output, on_delivery: Any = None) -> bool:
        """Produce one message, waiting while the local queue is full; False if refused."""
        kwargs: dict[str, Any] = {"value": out.value, "key": out.key}
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        if out.partition is not None:
            kwargs["partition"] = out.partition
        if out.headers:
            kwargs["headers"] = list(out.headers.items())
        while True:
            try:
                producer.produce(out.topic, **kwargs)
                return True
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.05)
            except KafkaException as exc:
                self._count_error("produce")
                log.error("%s: producing to %s refused: %s", self.name, out.topic, exc.args[0])
                return False

    # ---- at-least-once

    def _deliver(self, out: Output, done: Callable[[], None], origin: _Origin) -> Any:
        def cb(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.stats.produced += 1
                self.metrics.messages_out.labels(self.name, out.topic).inc()
                done()
                return
            if err.code() in PURGED:
                return  # stopping without the brokers: the input is redone by its next owner
            self.stats.delivery_errors += 1
            self._count_error("delivery")
            log.error("%s: delivery to %s failed: %s", self.name, out.topic, err)
            if err.code() in RETRIABLE or err.retriable():
                self._retry.append((out, done, origin))
            elif out.topic != self.deadletter:
                self._count_dead("DeliveryFailed")
                self._retry.append(
                    (self._dead_output(origin, f"DeliveryFailed: {err}"), done, origin)
                )
            else:
                self._count_error("lost")
                done()

        return cb

    def _emit(
        self, producer: Producer, out: Output, done: Callable[[], None], origin: _Origin
    ) -> None:
        if self._send(producer, out, self._deliver(out, done, origin)):
            return
        if out.topic != self.deadletter:
            self._count_dead("ProduceRefused")
            dead = self._dead_output(origin, f"ProduceRefused: producing to {out.topic} failed")
            if self._send(producer, dead, self._deliver(dead, done, origin)):
                return
        self._count_error("lost")
        done()

    def _process(self, producer: Producer, tracker: OffsetTracker, msg: Message) -> None:
        self._count_in()
        origin = _Origin.of(msg)
        outputs, dead, drop = self._handle(msg)
        if drop is not None:
            self._count_dropped(drop)
            tracker.add(origin.topic, origin.partition, origin.offset, 0)
            return
        if dead is not None:
            self._count_dead(dead)
            outputs = [self._dead_output(origin, dead)]
            on_complete = None
        else:
            captured = next((o.captured_at for o in outputs), None)

            def on_complete() -> None:
                self._count_processed(captured)

        done = tracker.add(origin.topic, origin.partition, origin.offset, len(outputs), on_complete)
        for out in outputs:
            self._emit(producer, out, done, origin)

    def _drain_retries(self, producer: Producer) -> None:
        while self._retry:
            out, done, origin = self._retry.popleft()
            self._emit(producer, out, done, origin)

    def _flush(self, producer: Producer, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain_retries(producer)
            if producer.flush(min(1.0, max(0.0, deadline - time.monotonic()))) == 0 and not (
                self._retry
            ):
                return 0
        return len(producer) + len(self._retry)

    def _loop_at_least_once(self, consumer: Consumer, producer: Producer) -> None:
        tracker = OffsetTracker(consumer)

        def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
            self._flush(producer, 30)
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
                        self._process(producer, tracker, msg)
                self._drain_retries(producer)
                producer.poll(0)
                self._tick(consumer, producer)
        finally:
            self.health.state = "stopping"
            left = self._flush(producer, 30)
            if left:
                log.warning(
                    "%s: %d output(s) not acknowledged; their inputs will be redone",
                    self.name,
                    left,
                )
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                log.debug("%s: final commit: %s", self.name, exc)

    # ---- exactly-once

    def _loop_exactly_once(self, consumer: Consumer, producer: Producer) -> None:
        producer.init_transactions(max(30.0, self.bus.connect_timeout_s))
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
                    self._transaction(consumer, producer, msgs)
                self._tick(consumer, producer)
        finally:
            self.health.state = "stopping"

    def _transaction(self, consumer: Consumer, producer: Producer, msgs: list[Message]) -> None:
        """One batch as one transaction; on an abortable error, abort and rewind."""
        tally = _Tally()
        timeout = max(10.0, self.bus.transaction_timeout_s)
        for _ in msgs:
            self._count_in()
        try:
            producer.begin_transaction()
            for msg in msgs:
                self._transact_one(producer, msg, tally)
            offsets: dict[tuple[str, int], int] = {}
            for o in map(_Origin.of, msgs):
                key = (o.topic, o.partition)
                offsets[key] = max(offsets.get(key, 0), o.offset + 1)
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(),
                timeout,
            )
            self._commit_transaction(producer, timeout)
        except KafkaException as exc:
            self._abort(consumer, producer, msgs, exc.args[0])
            return
        self._apply(tally)

    def _transact_one(self, producer: Producer, msg: Message, tally: _Tally) -> None:
        origin = _Origin.of(msg)
        outputs, dead, drop = self._handle(msg)
        if drop is not None:
            tally.dropped[drop] += 1
            return
        if dead is None and not all(self._send(producer, o) for o in outputs):
            dead = "ProduceRefused: an output was refused by the producer"
        if dead is not None:
            out = self._dead_output(origin, dead)
            if not self._send(producer, out):
                raise KafkaException(KafkaError(KafkaError._FAIL, "dead letter refused"))
            tally.dead[dead] += 1
            tally.topics[out.topic] += 1
            return
        tally.processed += 1
        for o in outputs:
            tally.topics[o.topic] += 1
        captured = next((o.captured_at for o in outputs), None)
        if captured is not None:
            tally.ages.append(captured)

    def _commit_transaction(self, producer: Producer, timeout: float) -> None:
        for attempt in range(3):
            try:
                producer.commit_transaction(timeout)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if attempt == 2 or not err.retriable():
                    raise
                log.warning("%s: commit_transaction retry: %s", self.name, err)

    def _abort(
        self, consumer: Consumer, producer: Producer, msgs: list[Message], err: KafkaError
    ) -> None:
        self.stats.aborted += 1
        self._count_error("transaction")
        if err.fatal():
            raise SauronError(f"{self.name}: fatal transactional error: {err}")
        log.warning(
            "%s: transaction aborted (%s); rewinding %d input(s)", self.name, err, len(msgs)
        )
        while True:
            try:
                producer.abort_transaction(max(10.0, self.bus.transaction_timeout_s))
                break
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise SauronError(f"{self.name}: cannot abort: {exc.args[0]}") from None
                if self.stop_event.is_set():
                    return
                log.warning("%s: abort_transaction retry: %s", self.name, exc.args[0])
        self._rewind(consumer, {(o.topic, o.partition) for o in map(_Origin.of, msgs)})

    def _rewind(self, consumer: Consumer, parts: set[tuple[str, int]]) -> None:
        """Seek partitions back to their committed offsets (inputs of an aborted batch)."""
        try:
            committed = consumer.committed(
                [TopicPartition(t, p) for t, p in parts], timeout=self.bus.connect_timeout_s
            )
        except KafkaException as exc:
            log.warning("%s: cannot read committed offsets to rewind: %s", self.name, exc)
            return
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            except KafkaException as exc:  # no longer ours: its new owner starts there anyway
                log.debug("%s: seek %s[%d]: %s", self.name, tp.topic, tp.partition, exc)

    def _apply(self, tally: _Tally) -> None:
        for topic, n in tally.topics.items():
            self.stats.produced += n
            self.metrics.messages_out.labels(self.name, topic).inc(n)
        for reason, n in tally.dead.items():
            self._count_dead(reason, n)
        for reason, n in tally.dropped.items():
            self._count_dropped(reason, n)
        for captured in tally.ages:
            self._count_processed(captured)
        for _ in range(tally.processed - len(tally.ages)):
            self._count_processed(None)

    # ---- shared

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() != KafkaError._PARTITION_EOF:
            self._count_error("consumer")
            log.warning("%s: consumer error: %s", self.name, err)
        return False

    def _tick(self, consumer: Consumer, producer: Producer) -> None:
        """Heartbeat for /healthz; every 2 s the lag of each assigned partition."""
        now = time.monotonic()
        if now - self._lag_at < 2.0:
            self.health.last_beat = now
            return
        self._lag_at = now
        lag_total = 0
        try:
            assigned = consumer.assignment()
            positions = consumer.position(assigned) if assigned else []
        except KafkaException:
            positions = []
        for tp in positions:
            lo, hi = consumer.get_watermark_offsets(tp, cached=True)
            if hi < 0:
                continue
            pos = tp.offset if tp.offset >= 0 else lo
            lag = max(0, hi - pos)
            lag_total += lag
            labels = (tp.topic, str(tp.partition))
            self._lag_labels.add(labels)
            self.metrics.lag.labels(self.name, *labels).set(lag)
        self.metrics.assigned.labels(self.name).set(len(positions))
        self.metrics.buffered.labels(self.name).set(len(producer))
        self.health.beat(assigned=len(positions), lag=lag_total, group=self.group)

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
        self._forget_lag(parts)

    def _forget_lag(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            labels = (tp.topic, str(tp.partition))
            if labels in self._lag_labels:
                self._lag_labels.discard(labels)
                self.metrics.lag.remove(self.name, *labels)

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
            consumer.close()  # leaves the group: its partitions move at once
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
