"""Producing a stage's outputs, and delivering them at least once.

:func:`produce` hands one message to the producer (both delivery modes). With
at-least-once delivery (:class:`Delivery`) every output carries a callback: an
acknowledged one tells the input's offset tracker (``bus/offsets.py``); one that failed
for a passing reason is produced again, one that failed for good sends its input to the
dead letters; during a stop without the brokers nothing is retried (the input's next
owner redoes it)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sauron.bus.client import PURGED, RETRIABLE
from sauron.bus.deadletters import DeadLetters, Origin
from sauron.bus.handler import Output
from sauron.bus.worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def produce(
    producer: Producer,
    out: Output,
    meter: WorkerMetrics,
    on_delivery: DeliveryCallback | None = None,
) -> bool:
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
            meter.error("produce")
            log.error("%s: producing to %s refused: %s", meter.name, out.topic, exc.args[0])
            return False


class Delivery:
    """At-least-once delivery of one worker's outputs through ``producer``."""

    def __init__(self, producer: Producer, meter: WorkerMetrics, dead: DeadLetters) -> None:
        self.producer = producer
        self.meter = meter
        self.dead = dead
        self._retry: deque[tuple[Output, Callable[[], None], Origin]] = deque()

    def emit(self, out: Output, done: Callable[[], None], origin: Origin) -> None:
        """Produce ``out``; ``done`` is called once it is delivered, or given up on."""
        if produce(self.producer, out, self.meter, self._on_delivery(out, done, origin)):
            return
        if out.topic != self.dead.topic:
            self.meter.dead("ProduceRefused")
            dead = self.dead.letter(origin, f"ProduceRefused: producing to {out.topic} failed")
            if produce(self.producer, dead, self.meter, self._on_delivery(dead, done, origin)):
                return
        self.meter.error("lost")
        done()

    def _on_delivery(
        self, out: Output, done: Callable[[], None], origin: Origin
    ) -> DeliveryCallback:
        def cb(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.meter.produced(out.topic)
                done()
                return
            if err.code() in PURGED:
                return  # stopping without the brokers: the input is redone by its next owner
            self.meter.stats.delivery_errors += 1
            self.meter.error("delivery")
            log.error("%s: delivery to %s failed: %s", self.meter.name, out.topic, err)
            if err.code() in RETRIABLE or err.retriable():
                self._retry.append((out, done, origin))
            elif out.topic != self.dead.topic:
                self.meter.dead("DeliveryFailed")
                self._retry.append(
                    (self.dead.letter(origin, f"DeliveryFailed: {err}"), done, origin)
                )
            else:
                self.meter.error("lost")
                done()

        return cb

    def drain_retries(self) -> None:
        """Produce again what failed for a passing reason (called from the loop)."""
        while self._retry:
            out, done, origin = self._retry.popleft()
            self.emit(out, done, origin)

    def flush(self, timeout: float) -> int:
        """Wait until every output is acknowledged (retries included), at most ``timeout``
        s; the number still not acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain_retries()
            if self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic()))) == 0 and not (
                self._retry
            ):
                return 0
        return len(self.producer) + len(self._retry)
