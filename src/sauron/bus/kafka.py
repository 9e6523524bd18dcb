"""Kafka transport: thin wrappers over confluent-kafka (librdkafka).

Why confluent-kafka: it is librdkafka underneath, so batching, compression, idempotent
producers, transactions and cooperative rebalancing are done in C and well tested, and
the Python side stays a small loop.

Delivery (docs/reliability.md has the whole story):

- Cameras to the frames topic: idempotent producer, ``acks=all``. While the brokers are
  unreachable frames wait in the producer, at most ``bus.producer_buffer_mb`` MiB and
  ``bus.delivery_timeout_s`` seconds; past that they are dropped and counted.
- Stage workers, at-least-once (default): an input offset is stored only once every
  output produced from it, and from every earlier input of the same partition, was
  acknowledged; offsets are committed in the background and synchronously when partitions
  are revoked or the worker stops. A worker that dies loses nothing: its partitions move to
  the rest of the group, which re-reads from the last committed offsets (so some outputs
  may come twice).
- Stage workers, exactly-once (``bus.exactly_once``): each batch of inputs is one Kafka
  transaction holding its outputs (detections, annotated frames, sightings, dead letters)
  and the input offsets; readers use ``read_committed``. A dead worker's open transaction
  is aborted by the brokers after ``bus.transaction_timeout_s``.

An input a handler cannot process (corrupt frame, unknown message version, too large)
goes to the dead-letter topic with the reason in its headers; the worker carries on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from sauron import SauronError, codec
from sauron.bus.topics import Topics, frame_partition
from sauron.config import BusConfig, Settings
from sauron.metrics import Metrics
from sauron.types import Frame

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# Room left for headers and batch overhead under the brokers' message.max.bytes.
MESSAGE_HEADROOM = 64 * 1024
MAX_VALUE_BYTES = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM

_RETRIABLE = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
_NO_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


class BrokerUnreachable(SauronError):
    """No Kafka broker answered within the configured time."""


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


def client_config(bus: BusConfig, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": bus.bootstrap_servers}
    conf.update(bus.client)
    conf.update(extra)
    return conf


def check_reachable(bus: BusConfig) -> dict[str, int]:
    """Topic name -> partition count, or BrokerUnreachable after the bounded wait."""
    admin = AdminClient(client_config(bus, **{"socket.connection.setup.timeout.ms": 5000}))
    try:
        md = admin.list_topics(timeout=bus.connect_timeout_s)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"cannot reach Kafka at {bus.bootstrap_servers} within "
            f"{bus.connect_timeout_s:.0f} s ({exc.args[0]}); is the broker running? "
            "(scripts/kafka-broker start runs one on this machine)"
        ) from None
    return {name: len(t.partitions) for name, t in md.topics.items()}


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Partitions and configuration of every topic of the deployment."""
    t = settings.topics
    topics = Topics.from_config(t)
    common = {
        "min.insync.replicas": str(t.min_insync_replicas),
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }
    stream = {**common, "retention.ms": str(t.retention_ms)}
    week = str(7 * 86_400_000)
    return {
        topics.frames: (t.partitions, stream),
        topics.detections: (t.partitions, stream),
        topics.annotated: (t.partitions, stream),
        topics.sightings: (t.partitions, {**common, "retention.ms": week}),
        topics.watchlist: (1, {**common, "cleanup.policy": "compact"}),
        topics.deadletter: (1, {**common, "retention.ms": week}),
    }


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the missing topics; return topic -> partition count of all of them."""
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    wanted = topic_specs(settings)
    new = [
        NewTopic(
            name,
            num_partitions=parts,
            replication_factor=settings.topics.replication,
            config=conf,
        )
        for name, (parts, conf) in wanted.items()
        if name not in existing
    ]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=30).items():
            try:
                fut.result()
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise SauronError(f"cannot create topic {name}: {exc.args[0]}") from None
    if new:
        _wait_for_leaders(admin, [t.topic for t in new], settings.bus.connect_timeout_s)
    counts = check_reachable(settings.bus)
    return {name: counts[name] for name in wanted if name in counts}


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Wait (bounded) until every partition of new topics has a leader to talk to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        parts = [
            p
            for n in names
            if n in md.topics and md.topics[n].error is None
            for p in md.topics[n].partitions.values()
        ]
        present = all(n in md.topics for n in names)
        if present and parts and all(p.leader >= 0 and p.error is None for p in parts):
            return
        time.sleep(0.1)
    log.warning("new topics %s have partitions without a leader after %.0f s", names, timeout)


def delete_topics(settings: Settings) -> list[str]:
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    names = [n for n in topic_specs(settings) if n in existing]
    for name, fut in admin.delete_topics(names, operation_timeout=30).items() if names else []:
        fut.result()
        log.info("deleted topic %s", name)
    return names


def make_producer(bus: BusConfig, **extra: Any) -> Producer:
    """An idempotent ``acks=all`` producer; ``transactional.id`` in ``extra`` for EOS."""
    conf = client_config(
        bus,
        **{
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.size": 4 * 1024 * 1024,
            "message.max.bytes": MAX_MESSAGE_BYTES,
            "queue.buffering.max.kbytes": 256 * 1024,
            "socket.connection.setup.timeout.ms": 5000,
            **extra,
        },
    )
    if "transactional.id" not in conf:
        conf.setdefault("message.timeout.ms", int(bus.delivery_timeout_s * 1000))
    return Producer(conf)


def make_consumer(bus: BusConfig, group: str, **extra: Any) -> Consumer:
    """A cooperative-sticky group member that stores offsets only when told to.

    ``read_committed`` always: outputs of aborted transactions (exactly-once mode) are
    never seen; for topics written without transactions it changes nothing.
    """
    conf = client_config(
        bus,
        **{
            "group.id": group,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
            "queued.max.messages.kbytes": 32 * 1024,
            # A fetch waits at the broker until data arrives (then it is answered at once);
            # the wait bounds only how often an idle consumer asks again.
            "fetch.wait.max.ms": 100,
            "session.timeout.ms": int(bus.session_timeout_s * 1000),
            "heartbeat.interval.ms": min(1000, int(bus.session_timeout_s * 1000) // 3),
            **extra,
        },
    )
    return Consumer(conf)


def consume_ready(consumer: Consumer, most: int, timeout: float = 0.2) -> list[Message]:
    """Wait up to ``timeout`` for one message, then take whatever else is already
    fetched, up to ``most`` in all: batches form under load and a lone message is never
    held back. (``consume(most, timeout)`` returns only when ``most`` messages are there
    or the timeout passed, which at a few frames a second is the whole timeout for each.)
    """
    msgs = consumer.consume(1, timeout=timeout)
    if msgs and most > 1:
        msgs += consumer.consume(most - 1, timeout=0)
    return msgs


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
    callables run (e.g. stopping a watchlist reader the handler uses).
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
    ) -> None:
        self.settings = settings
        self.bus = settings.bus
        self.topic = topic
        self.group = group
        self.handler = handler
        self.name = name
        self.batch_size = batch_size
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

    def _handle(self, msg: Message) -> tuple[list[Output], str | None, str | None]:
        """(outputs, dead-letter reason, drop reason) for one input message."""
        t0 = time.perf_counter()
        try:
            outputs = self.handler(msg.value() or b"")
        except Skip as exc:
            return [], None, exc.reason
        except Exception as exc:  # any failure on one message must not stop the stream
            return [], f"{type(exc).__name__}: {exc}", None
        finally:
            self.metrics.process_time.labels(self.name).observe(time.perf_counter() - t0)
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
            if err.code() in _PURGED:
                return  # stopping without the brokers: the input is redone by its next owner
            self.stats.delivery_errors += 1
            self._count_error("delivery")
            log.error("%s: delivery to %s failed: %s", self.name, out.topic, err)
            if err.code() in _RETRIABLE or err.retriable():
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
            self._forget_lag(parts)

        def on_lost(_c: Consumer, parts: list[TopicPartition]) -> None:
            tracker.forget(parts)
            self._forget_lag(parts)

        consumer.subscribe([self.topic], on_revoke=on_revoke, on_lost=on_lost)
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
            on_revoke=lambda _c, p: self._forget_lag(p),
            on_lost=lambda _c, p: self._forget_lag(p),
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


# ---------------------------------------------------------------------------- camera producer


@dataclass
class ProducerStats:
    offered: int = 0
    acked: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class FrameProducer:
    """Publishes camera frames to the frames topic: idempotent, ``acks=all``, bounded.

    While the brokers are unreachable frames wait in the producer's queue, at most
    ``bus.producer_buffer_mb`` MiB. When it is full, a frame of a camera in ``blocking``
    (files read as fast as possible) waits for room; a frame of any other (live) camera is
    dropped (``buffer_full``). A frame not acknowledged within ``bus.delivery_timeout_s`` is
    dropped (``delivery_timeout``). Every drop is counted in ``stats`` and the metrics.
    Callable from several camera threads at once.
    """

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        *,
        metrics: Metrics | None = None,
        blocking: Collection[str] = (),
        stop: threading.Event | None = None,
    ) -> None:
        bus = settings.bus
        self.producer = make_producer(
            bus,
            **{
                "queue.buffering.max.kbytes": bus.producer_buffer_mb * 1024,
                "queue.buffering.max.messages": 1_000_000,
            },
        )
        self.topic = Topics.from_config(settings.topics).frames
        self.partitions = partitions
        self.mode = settings.topics.partitioning
        self.blocking = frozenset(blocking)
        self.stop = stop or threading.Event()
        self.metrics = metrics or Metrics()
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self.health = self.metrics.health.component("ingest")
        self.health.beat()
        self._warned_at = -1e9

    def _drop(self, reason: str, frame: Frame) -> None:
        with self._lock:
            self.stats.dropped[reason] += 1
        self.metrics.dropped.labels("ingest", reason).inc()
        log.debug("camera %s frame %d dropped: %s", frame.camera, frame.number, reason)

    def _on_delivery(self, frame: Frame) -> Callable[[KafkaError | None, Message], None]:
        def cb(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                with self._lock:
                    self.stats.acked += 1
                self.metrics.frames_out.labels("ingest").inc()
                self.metrics.latency.labels("ingest").observe(
                    max(0.0, time.time() - frame.captured_at)
                )
                return
            timed_out = err.code() in (KafkaError._MSG_TIMED_OUT, *_PURGED)
            self._drop("delivery_timeout" if timed_out else "delivery_failed", frame)
            self.metrics.errors.labels("ingest", "delivery").inc()
            now = time.monotonic()
            if now - self._warned_at >= 10.0:  # at most one line per 10 s while it lasts
                self._warned_at = now
                log.warning(
                    "camera %s frame %d not delivered: %s (%d frames dropped so far: %s)",
                    frame.camera, frame.number, err, self.stats.dropped_total,
                    dict(self.stats.dropped),
                )  # fmt: skip

        return cb

    def __call__(self, frame: Frame) -> None:
        self.publish(frame)

    def publish(self, frame: Frame) -> bool:
        """Publish one frame; False if it was dropped at once."""
        with self._lock:
            self.stats.offered += 1
        self.metrics.frames_in.labels("ingest").inc()
        value = codec.encode_frame(frame)
        if len(value) > MAX_VALUE_BYTES:
            self._drop("too_large", frame)
            return False
        part = frame_partition(frame.camera, frame.number, self.partitions, self.mode)
        block = frame.camera in self.blocking
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=value,
                    key=frame.camera,
                    partition=part,
                    on_delivery=self._on_delivery(frame),
                )
                break
            except BufferError:
                if not block or self.stop.is_set():
                    self._drop("buffer_full", frame)
                    self.producer.poll(0)
                    return False
                self.producer.poll(0.05)
            except KafkaException as exc:
                self._drop("refused", frame)
                log.error("camera %s frame %d refused: %s", frame.camera, frame.number, exc)
                return False
        self.producer.poll(0)
        self.metrics.buffered.labels("ingest").set(len(self.producer))
        self.health.beat()
        return True

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every buffered frame; the number left."""
        left = int(self.producer.flush(timeout))
        self.metrics.buffered.labels("ingest").set(left)
        return left

    def __len__(self) -> int:
        return len(self.producer)


# ---------------------------------------------------------------------------- readers


class TopicTail(threading.Thread):
    """Reads partitions of a topic from given offsets (no consumer group), calling ``on_msg``.

    Used for the broadcast watchlist (every matcher reads every entry) and by viewers and
    collectors that read chosen partitions, e.g. one camera's annotated frames.
    """

    def __init__(
        self,
        bus: BusConfig,
        topic: str,
        on_msg: Callable[[Message], None],
        *,
        partitions: list[int] | None = None,
        start: dict[int, int] | None = None,
    ) -> None:
        super().__init__(daemon=True, name=f"tail-{topic}")
        self.bus = bus
        self.topic = topic
        self.on_msg = on_msg
        self.partitions = partitions
        self.start_offsets = start or {}
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.caught_up = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        consumer = make_consumer(
            self.bus, f"sauron-tail-{uuid.uuid4().hex}", **{"enable.auto.commit": False}
        )
        try:
            self._follow(consumer)
        except KafkaException as exc:
            self.error = str(exc.args[0])
            log.error("reading %s failed: %s", self.topic, self.error)
        finally:
            consumer.close()

    def _follow(self, consumer: Consumer) -> None:
        deadline = time.monotonic() + self.bus.connect_timeout_s
        parts = self.partitions
        while parts is None:  # a topic just created may not be known to the broker yet
            md = consumer.list_topics(self.topic, timeout=self.bus.connect_timeout_s).topics
            if md[self.topic].error is None and md[self.topic].partitions:
                parts = sorted(md[self.topic].partitions)
            elif time.monotonic() > deadline:
                raise KafkaException(md[self.topic].error or KafkaError(KafkaError._UNKNOWN_TOPIC))
            else:
                time.sleep(0.2)
        consumer.assign(
            [
                TopicPartition(self.topic, p, self.start_offsets.get(p, OFFSET_BEGINNING))
                for p in parts
            ]
        )
        # Caught up once every partition has been read to where it ended at start.
        behind = {}
        for p in parts:
            low, high = watermarks(consumer, self.topic, p, deadline)
            if high > max(low, self.start_offsets.get(p, low)):
                behind[p] = high
        self.ready.set()
        while not self.stop_event.is_set():
            if not behind:
                self.caught_up.set()
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            part, offset = msg.partition() or 0, msg.offset() or 0
            if part in behind and offset + 1 >= behind[part]:
                del behind[part]
            self.on_msg(msg)

    def stop(self) -> None:
        self.stop_event.set()


def watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """(low, high) offsets of a partition, asked again while it is between leaders (a new
    topic on a busy broker, a failover) until ``deadline`` (``time.monotonic()``)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(0.5, deadline - time.monotonic())
            )
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in _NO_LEADER):
                raise
            time.sleep(0.2)


def end_offsets(bus: BusConfig, topic: str) -> dict[int, int]:
    """The current high-water mark of every partition of a topic."""
    consumer = make_consumer(bus, f"sauron-probe-{uuid.uuid4().hex}")
    deadline = time.monotonic() + bus.connect_timeout_s
    try:
        md = consumer.list_topics(topic, timeout=bus.connect_timeout_s)
        return {p: watermarks(consumer, topic, p, deadline)[1] for p in md.topics[topic].partitions}
    finally:
        consumer.close()


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
