"""Exactly-once delivery (``bus.exactly_once``): each batch of inputs is one Kafka
transaction holding its outputs (dead letters included) and the input offsets. What a
batch did is counted only once it is committed; an aborted batch is read again from the
committed offsets."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from sauron import SauronError
from sauron.bus.deadletters import DeadLetters, Origin
from sauron.bus.delivery import produce
from sauron.bus.handler import Output
from sauron.bus.offsets import rewind
from sauron.bus.worker_metrics import WorkerMetrics
from sauron.config import BusConfig

log = logging.getLogger(__name__)

#: What the worker makes of one input: (outputs, dead-letter reason, drop reason).
Handled = tuple[list[Output], str | None, str | None]


@dataclass
class _Tally:
    """What one batch did, applied to the stats only once the batch is committed."""

    processed: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    topics: Counter[str] = field(default_factory=Counter)
    ages: list[float] = field(default_factory=list)


class Transactions:
    """Runs batches of inputs as transactions of ``producer`` (call :meth:`begin` first)."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        *,
        bus: BusConfig,
        meter: WorkerMetrics,
        dead: DeadLetters,
        handle: Callable[[Message], Handled],
        stop_event: threading.Event,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.bus = bus
        self.meter = meter
        self.dead = dead
        self.handle = handle
        self.stop_event = stop_event

    @property
    def name(self) -> str:
        return self.meter.name

    def begin(self) -> None:
        """Register the transactional id (fences an older producer of the same id)."""
        self.producer.init_transactions(max(30.0, self.bus.connect_timeout_s))

    def batch(self, msgs: list[Message]) -> None:
        """One batch as one transaction; on an abortable error, abort and rewind."""
        tally = _Tally()
        timeout = max(10.0, self.bus.transaction_timeout_s)
        for _ in msgs:
            self.meter.consumed()
        try:
            self.producer.begin_transaction()
            for msg in msgs:
                self._one(msg, tally)
            offsets: dict[tuple[str, int], int] = {}
            for o in map(Origin.of, msgs):
                key = (o.topic, o.partition)
                offsets[key] = max(offsets.get(key, 0), o.offset + 1)
            self.producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                self.consumer.consumer_group_metadata(),
                timeout,
            )
            self._commit(timeout)
        except KafkaException as exc:
            self._abort(msgs, exc.args[0])
            return
        self._apply(tally)

    def _one(self, msg: Message, tally: _Tally) -> None:
        origin = Origin.of(msg)
        outputs, dead, drop = self.handle(msg)
        if drop is not None:
            tally.dropped[drop] += 1
            return
        if dead is None and not all(produce(self.producer, o, self.meter) for o in outputs):
            dead = "ProduceRefused: an output was refused by the producer"
        if dead is not None:
            out = self.dead.letter(origin, dead)
            if not produce(self.producer, out, self.meter):
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

    def _commit(self, timeout: float) -> None:
        for attempt in range(3):
            try:
                self.producer.commit_transaction(timeout)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if attempt == 2 or not err.retriable():
                    raise
                log.warning("%s: commit_transaction retry: %s", self.name, err)

    def _abort(self, msgs: list[Message], err: KafkaError) -> None:
        self.meter.stats.aborted += 1
        self.meter.error("transaction")
        if err.fatal():
            raise SauronError(f"{self.name}: fatal transactional error: {err}")
        log.warning(
            "%s: transaction aborted (%s); rewinding %d input(s)", self.name, err, len(msgs)
        )
        while True:
            try:
                self.producer.abort_transaction(max(10.0, self.bus.transaction_timeout_s))
                break
            except KafkaException as exc:
                if exc.args[0].fatal():
                    raise SauronError(f"{self.name}: cannot abort: {exc.args[0]}") from None
                if self.stop_event.is_set():
                    return
                log.warning("%s: abort_transaction retry: %s", self.name, exc.args[0])
        parts = {(o.topic, o.partition) for o in map(Origin.of, msgs)}
        rewind(self.consumer, parts, self.bus.connect_timeout_s, self.name)

    def _apply(self, tally: _Tally) -> None:
        for topic, n in tally.topics.items():
            self.meter.produced(topic, n)
        for reason, n in tally.dead.items():
            self.meter.dead(reason, n)
        for reason, n in tally.dropped.items():
            self.meter.dropped(reason, n)
        for captured in tally.ages:
            self.meter.processed(captured)
        for _ in range(tally.processed - len(tally.ages)):
            self.meter.processed(None)
