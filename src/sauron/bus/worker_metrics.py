"""What a stage worker counts: its :class:`WorkerStats`, the Prometheus figures of
``sauron.metrics`` (inputs, outputs, dead letters, drops, errors, latency), its
heartbeat for ``/healthz`` and the lag of each partition it holds."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from sauron.bus.deadletters import reason_label
from sauron.metrics import Metrics

#: Seconds between two readings of the partitions' lag.
LAG_EVERY_S = 2.0


@dataclass
class WorkerStats:
    consumed: int = 0
    processed: int = 0  # inputs whose outputs were all acknowledged (or committed)
    produced: int = 0
    dead_letters: int = 0
    dropped: int = 0
    delivery_errors: int = 0
    aborted: int = 0  # transactions aborted (exactly-once)


class WorkerMetrics:
    """Counts of one worker (``name``, a member of ``group``), kept in ``stats`` and in
    ``metrics``; ``health`` is its component of the health report."""

    def __init__(self, name: str, group: str, metrics: Metrics) -> None:
        self.name = name
        self.group = group
        self.metrics = metrics
        self.stats = WorkerStats()
        self.health = metrics.health.component(name)
        self._lag_at = 0.0
        self._lag_labels: set[tuple[str, str]] = set()

    def consumed(self) -> None:
        self.stats.consumed += 1
        self.metrics.frames_in.labels(self.name).inc()

    def handled(self, took_s: float) -> None:
        self.metrics.process_time.labels(self.name).observe(took_s)

    def produced(self, topic: str, n: int = 1) -> None:
        self.stats.produced += n
        self.metrics.messages_out.labels(self.name, topic).inc(n)

    def dead(self, reason: str, n: int = 1) -> None:
        self.stats.dead_letters += n
        self.metrics.dead_letters.labels(self.name, reason_label(reason)).inc(n)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.stats.dropped += n
        self.metrics.dropped.labels(self.name, reason).inc(n)

    def processed(self, captured_at: float | None) -> None:
        self.stats.processed += 1
        self.metrics.frames_out.labels(self.name).inc()
        if captured_at is not None:
            self.metrics.latency.labels(self.name).observe(max(0.0, time.time() - captured_at))

    def error(self, kind: str) -> None:
        self.metrics.errors.labels(self.name, kind).inc()

    def tick(self, consumer: Consumer, producer: Producer) -> None:
        """Heartbeat for /healthz; every ``LAG_EVERY_S`` the lag of each assigned partition."""
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_S:
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

    def forget_lag(self, parts: list[TopicPartition]) -> None:
        """Partitions no longer held: their lag is no longer reported."""
        for tp in parts:
            labels = (tp.topic, str(tp.partition))
            if labels in self._lag_labels:
                self._lag_labels.discard(labels)
                self.metrics.lag.remove(self.name, *labels)
