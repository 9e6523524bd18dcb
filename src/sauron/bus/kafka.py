"""Kafka transport: thin wrappers over confluent-kafka (librdkafka).

Why confluent-kafka: it is librdkafka underneath, so batching, compression, idempotent
producers, transactions and cooperative rebalancing are done in C and well tested, and
the Python side stays a small loop.

Delivery: frames are at-least-once end to end. A stage worker stores an input offset only
once every output produced from it, and from every earlier input of the same partition,
was acknowledged by the brokers (``acks=all``, idempotent producer); offsets are then
committed in the background and synchronously when partitions are revoked or the worker
stops. A worker that dies loses nothing: its partitions move to the rest of the group,
which re-reads from the last committed offsets.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
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

from sauron import SauronError
from sauron.bus.topics import Topics
from sauron.config import BusConfig, Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


class BrokerUnreachable(SauronError):
    """No Kafka broker answered within the configured time."""


@dataclass(frozen=True)
class Output:
    """One message a stage wants produced."""

    topic: str
    value: bytes | None
    key: str | None = None
    partition: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


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
            "(scripts/kafka-broker start runs one on this machine)") from None
    return {name: len(t.partitions) for name, t in md.topics.items()}


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Partitions and configuration of every topic of the deployment."""
    t = settings.topics
    topics = Topics.from_config(t)
    common = {"min.insync.replicas": str(t.min_insync_replicas),
              "max.message.bytes": str(MAX_MESSAGE_BYTES)}
    stream = {**common, "retention.ms": str(t.retention_ms)}
    return {
        topics.frames: (t.partitions, stream),
        topics.detections: (t.partitions, stream),
        topics.annotated: (t.partitions, stream),
        topics.sightings: (t.partitions, {**common, "retention.ms": str(7 * 86_400_000)}),
        topics.watchlist: (1, {**common, "cleanup.policy": "compact"}),
        topics.deadletter: (1, {**common, "retention.ms": str(7 * 86_400_000)}),
    }


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the missing topics; return topic -> partition count of all of them."""
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    wanted = topic_specs(settings)
    new = [NewTopic(name, num_partitions=parts, replication_factor=settings.topics.replication,
                    config=conf)
           for name, (parts, conf) in wanted.items() if name not in existing]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=30).items():
            try:
                fut.result()
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise SauronError(f"cannot create topic {name}: {exc.args[0]}") from None
    counts = check_reachable(settings.bus)
    return {name: counts[name] for name in wanted if name in counts}


def delete_topics(settings: Settings) -> list[str]:
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    names = [n for n in topic_specs(settings) if n in existing]
    for name, fut in (admin.delete_topics(names, operation_timeout=30).items() if names else []):
        fut.result()
        log.info("deleted topic %s", name)
    return names


def make_producer(bus: BusConfig, **extra: Any) -> Producer:
    conf = client_config(bus, **{
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "batch.size": 4 * 1024 * 1024,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.kbytes": 256 * 1024,
        "socket.connection.setup.timeout.ms": 5000,
        **extra,
    })
    return Producer(conf)


def make_consumer(bus: BusConfig, group: str, **extra: Any) -> Consumer:
    conf = client_config(bus, **{
        "group.id": group,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
        "fetch.wait.max.ms": 20,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        **extra,
    })
    return Consumer(conf)


class OffsetTracker:
    """Stores an input offset once all outputs of it, and of earlier inputs, are delivered."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._pending: dict[tuple[str, int], deque[list[int]]] = {}

    def add(self, topic: str, partition: int, offset: int, outputs: int) -> Callable[[], None]:
        entry = [offset, outputs]
        queue = self._pending.setdefault((topic, partition), deque())
        queue.append(entry)

        def done() -> None:
            entry[1] -= 1
            self._advance(topic, partition)

        if outputs == 0:
            self._advance(topic, partition)
        return done

    def _advance(self, topic: str, partition: int) -> None:
        queue = self._pending.get((topic, partition))
        last = None
        while queue and queue[0][1] <= 0:
            last = queue.popleft()[0]
        if last is not None:
            try:
                self.consumer.store_offsets(offsets=[TopicPartition(topic, partition, last + 1)])
            except KafkaException as exc:  # partition revoked meanwhile: its new owner redoes it
                log.debug("could not store offset %s[%d]@%d: %s", topic, partition, last, exc)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)


Handler = Callable[[bytes], list[Output]]


@dataclass
class WorkerStats:
    consumed: int = 0
    produced: int = 0
    dead_letters: int = 0
    delivery_errors: int = 0


class StageWorker:
    """Consume-transform-produce loop of one stage, one process, one consumer-group member.

    ``handler`` turns an input message value into outputs. An exception in it (a corrupt
    frame, an unknown message version) sends the input to the dead-letter topic with the
    reason in its headers; the worker carries on.
    """

    def __init__(self, settings: Settings, *, topic: str, group: str, handler: Handler,
                 name: str, batch_size: int = 8) -> None:
        self.settings = settings
        self.topic = topic
        self.group = group
        self.handler = handler
        self.name = name
        self.batch_size = batch_size
        self.deadletter = Topics.from_config(settings.topics).deadletter
        self.stats = WorkerStats()
        self.stop_event = threading.Event()

    def _deliver(self, done: Callable[[], None]) -> Callable[[Any, Message], None]:
        def cb(err: Any, msg: Message) -> None:
            if err is not None:
                self.stats.delivery_errors += 1
                log.error("%s: delivery to %s failed: %s", self.name, msg.topic(), err)
                return
            self.stats.produced += 1
            done()
        return cb

    def _dead_letter(self, producer: Producer, msg: Message, reason: str,
                     done: Callable[[], None]) -> None:
        self.stats.dead_letters += 1
        log.warning("%s: %s[%d]@%d to dead letters: %s", self.name, msg.topic(),
                    msg.partition(), msg.offset(), reason)
        headers = {"reason": reason[:1000], "stage": self.name, "topic": msg.topic(),
                   "partition": str(msg.partition()), "offset": str(msg.offset())}
        producer.produce(self.deadletter, value=msg.value(), key=msg.key(),
                         headers=list(headers.items()), on_delivery=self._deliver(done))

    def _process(self, producer: Producer, tracker: OffsetTracker, msg: Message) -> None:
        self.stats.consumed += 1
        value = msg.value() or b""
        try:
            outputs = self.handler(value)
        except Exception as exc:  # any failure on one message must not stop the stream
            done = tracker.add(msg.topic(), msg.partition(), msg.offset(), 1)
            self._dead_letter(producer, msg, f"{type(exc).__name__}: {exc}", done)
            return
        done = tracker.add(msg.topic(), msg.partition(), msg.offset(), len(outputs))
        for out in outputs:
            kwargs: dict[str, Any] = {"value": out.value, "key": out.key,
                                      "on_delivery": self._deliver(done)}
            if out.partition is not None:
                kwargs["partition"] = out.partition
            if out.headers:
                kwargs["headers"] = list(out.headers.items())
            while True:
                try:
                    producer.produce(out.topic, **kwargs)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)

    def run(self) -> WorkerStats:
        check_reachable(self.settings.bus)
        producer = make_producer(self.settings.bus)
        consumer = make_consumer(self.settings.bus, self.group)
        tracker = OffsetTracker(consumer)

        def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
            producer.flush(30)
            try:
                c.commit(asynchronous=False)
            except KafkaException as exc:
                log.debug("%s: commit on revoke: %s", self.name, exc)
            tracker.forget(parts)

        consumer.subscribe([self.topic], on_revoke=on_revoke,
                           on_lost=lambda c, p: tracker.forget(p))
        log.info("%s: consuming %s as group %s", self.name, self.topic, self.group)
        try:
            while not self.stop_event.is_set():
                for msg in consumer.consume(self.batch_size, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("%s: consumer error: %s", self.name, err)
                        continue
                    self._process(producer, tracker, msg)
                producer.poll(0)
        finally:
            producer.flush(30)
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                log.debug("%s: final commit: %s", self.name, exc)
            consumer.close()
            log.info("%s: stopped after %d in, %d out, %d dead letters", self.name,
                     self.stats.consumed, self.stats.produced, self.stats.dead_letters)
        return self.stats


class TopicTail(threading.Thread):
    """Reads partitions of a topic from given offsets (no consumer group), calling ``on_msg``.

    Used for the broadcast watchlist (every matcher reads every entry) and by viewers and
    collectors that read chosen partitions, e.g. one camera's annotated frames.
    """

    def __init__(self, bus: BusConfig, topic: str, on_msg: Callable[[Message], None], *,
                 partitions: list[int] | None = None, start: dict[int, int] | None = None
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

    def run(self) -> None:
        consumer = make_consumer(self.bus, f"sauron-tail-{uuid.uuid4().hex}",
                                 **{"enable.auto.commit": False})
        try:
            md = consumer.list_topics(self.topic, timeout=self.bus.connect_timeout_s)
            parts = self.partitions
            if parts is None:
                parts = sorted(md.topics[self.topic].partitions)
            consumer.assign([TopicPartition(self.topic, p, self.start_offsets.get(
                p, OFFSET_BEGINNING)) for p in parts])
            # Caught up once every partition has been read to where it ended at start.
            behind = {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=self.bus.connect_timeout_s)
                if high > max(low, self.start_offsets.get(p, low)):
                    behind[p] = high
            self.ready.set()
            while not self.stop_event.is_set():
                if not behind:
                    self.caught_up.set()
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                if msg.partition() in behind and msg.offset() + 1 >= behind[msg.partition()]:
                    del behind[msg.partition()]
                self.on_msg(msg)
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stop_event.set()


def end_offsets(bus: BusConfig, topic: str) -> dict[int, int]:
    """The current high-water mark of every partition of a topic."""
    consumer = make_consumer(bus, f"sauron-probe-{uuid.uuid4().hex}")
    try:
        md = consumer.list_topics(topic, timeout=bus.connect_timeout_s)
        out = {}
        for p in md.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                     timeout=bus.connect_timeout_s)
            out[p] = high
        return out
    finally:
        consumer.close()


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
