"""Kafka clients: configuration, connections and small helpers, over confluent-kafka.

Why confluent-kafka: it is librdkafka underneath, so batching, compression, idempotent
producers, transactions and cooperative rebalancing are done in C and well tested, and
the Python side stays a small loop.

Every producer and consumer of the system is made here, with the message size limit the
topics are created with, and so are the questions asked of the brokers (are they reachable,
where does a partition end).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from sauron import SauronError
from sauron.config import BusConfig

log = logging.getLogger(__name__)

#: How long closing a consumer (leaving its group, committing) may take before the
#: process goes on without it.
CLOSE_TIMEOUT_S = 10.0

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# Room left for headers and batch overhead under the brokers' message.max.bytes.
MESSAGE_HEADROOM = 64 * 1024
MAX_VALUE_BYTES = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM

# Header of a frame from a live camera: a detect worker drops it once it is older than
# ``detect.live_frame_age_s`` (its capture time is the message timestamp).
LIVE_HEADER = "sauron.live"

# Delivery errors after which the message is produced again.
RETRIABLE = {
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
# Delivery errors of messages purged from the queue (the producer was closing).
PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
_NO_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
}


class BrokerUnreachable(SauronError):
    """No Kafka broker answered within the configured time."""


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
    """A group member (cooperative-sticky, or KIP-848 with ``bus.group_protocol``) that
    stores offsets only when told to.

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
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
            "queued.max.messages.kbytes": 32 * 1024,
            # A fetch waits at the broker until data arrives (then it is answered at once);
            # the wait bounds only how often an idle consumer asks again.
            "fetch.wait.max.ms": 100,
            **_group_protocol(bus),
            **extra,
        },
    )
    return Consumer(conf)


def _group_protocol(bus: BusConfig) -> dict[str, Any]:
    """Settings of the group protocol. Classic: members hear of a rebalance in a
    heartbeat answer and a cooperative one takes two join rounds, so they beat often (a
    joining worker then takes over in about a second, most of it librdkafka's one-second
    spacing of a member's joins). Consumer (KIP-848): the broker assigns, and its
    ``group.consumer.*`` settings fix heartbeat and session; the client may not set them."""
    if bus.group_protocol == "consumer":
        return {"group.protocol": "consumer"}
    session_ms = int(bus.session_timeout_s * 1000)
    return {
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": min(250, session_ms // 3),
    }


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


def close_consumer(consumer: Consumer, what: str, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """Close a consumer, waiting at most ``timeout_s``: with its brokers gone,
    librdkafka's close can block for ever (confluent-kafka-python #1667), and a process
    asked to stop must stop. It closes on a thread of its own; past the timeout the caller
    goes on (the group then moves the partitions after its session timeout) and the
    delay is logged. True when it closed in time."""
    late = f"{what}: the Kafka consumer did not close within %.0f s (brokers unreachable?); "
    return _within(
        consumer.close, f"close-{what}", timeout_s, late + "going on without a clean leave"
    )


def commit_final(consumer: Consumer, what: str, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """A worker's last synchronous commit, waiting at most ``timeout_s``: with its broker
    hung, a commit waits for the request's own timeout (a minute) before it fails. Past
    the limit the caller goes on to close (which commits what it can); inputs whose offsets
    were not committed are read again by the next owner (at-least-once). True when the
    commit returned in time (failed or not: its error is logged at debug level)."""

    def commit() -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            log.debug("%s: final commit: %s", what, exc)

    late = f"{what}: the last commit did not return within %.0f s (brokers unreachable?); "
    return _within(commit, f"commit-{what}", timeout_s, late + "going on to close")


def _within(fn: Callable[[], object], name: str, timeout_s: float, late: str) -> bool:
    """Run ``fn`` on a daemon thread and wait at most ``timeout_s`` for it; past that,
    log ``late`` (with the timeout) and return False."""
    done = threading.Thread(target=fn, name=name, daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        log.warning(late, timeout_s)
        return False
    return True


def end_offsets(bus: BusConfig, topic: str) -> dict[int, int]:
    """The current high-water mark of every partition of a topic."""
    consumer = make_consumer(bus, f"sauron-probe-{uuid.uuid4().hex}")
    deadline = time.monotonic() + bus.connect_timeout_s
    try:
        md = consumer.list_topics(topic, timeout=bus.connect_timeout_s)
        return {p: watermarks(consumer, topic, p, deadline)[1] for p in md.topics[topic].partitions}
    finally:
        close_consumer(consumer, f"offsets of {topic}")


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
