"""Input offsets: stored once an input is finished with (at-least-once), read back to
rewind the inputs of an aborted transaction (exactly-once)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)


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


def rewind(consumer: Consumer, parts: set[tuple[str, int]], timeout: float, name: str) -> None:
    """Seek partitions back to their committed offsets (inputs of an aborted batch)."""
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in parts], timeout=timeout)
    except KafkaException as exc:
        log.warning("%s: cannot read committed offsets to rewind: %s", name, exc)
        return
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:  # no longer ours: its new owner starts there anyway
            log.debug("%s: seek %s[%d]: %s", name, tp.topic, tp.partition, exc)
