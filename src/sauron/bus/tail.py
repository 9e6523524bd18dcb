"""Reading a topic outside any consumer group, from chosen offsets of chosen partitions:
the broadcast watchlist, viewers and collectors.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from sauron.bus.client import close_consumer, make_consumer, watermarks
from sauron.config import BusConfig

log = logging.getLogger(__name__)


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
            close_consumer(consumer, f"tail of {self.topic}")

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
