"""The camera side of the Kafka transport: frames published to the frames topic.

Delivery (docs/reliability.md has the whole story): an idempotent producer, ``acks=all``.
While the brokers are unreachable frames wait in the producer, at most
``bus.producer_buffer_mb`` MiB and ``bus.delivery_timeout_s`` seconds; past that they are
dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Message

from sauron import codec
from sauron.bus.client import LIVE_HEADER, MAX_VALUE_BYTES, PURGED, make_producer
from sauron.bus.topics import Topics, frame_partition
from sauron.config import Settings
from sauron.metrics import Metrics
from sauron.types import Frame

log = logging.getLogger(__name__)


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
    dropped (``buffer_full``). ``placement`` pins cameras to partitions (camera
    partitioning, see :func:`sauron.bus.ready.spread_cameras`). A frame not acknowledged
    within ``bus.delivery_timeout_s`` is dropped (``delivery_timeout``). Every drop is
    counted in ``stats`` and the metrics, and told to ``on_drop``. Callable from several
    camera threads at once.

    Every frame's message timestamp is its capture time; frames of the cameras in ``live``
    carry the :data:`~sauron.bus.client.LIVE_HEADER`, so detect workers drop them once they
    are older than ``detect.live_frame_age_s`` instead of detecting them late.
    """

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        *,
        metrics: Metrics | None = None,
        blocking: Collection[str] = (),
        stop: threading.Event | None = None,
        placement: Mapping[str, int] | None = None,
        live: Collection[str] = (),
        on_drop: Callable[[Frame], None] | None = None,
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
        self.live = frozenset(live)
        self.on_drop = on_drop
        # camera -> its partition (camera partitioning); cameras not in it are hashed
        self.placement = dict(placement or {})
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
        if self.on_drop is not None:
            self.on_drop(frame)

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
            timed_out = err.code() in (KafkaError._MSG_TIMED_OUT, *PURGED)
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
        placed = self.placement.get(frame.camera) if self.mode == "camera" else None
        part = (
            placed
            if placed is not None
            else frame_partition(frame.camera, frame.number, self.partitions, self.mode)
        )
        block = frame.camera in self.blocking
        headers: list[tuple[str, str | bytes | None]] | None = (
            [(LIVE_HEADER, b"1")] if frame.camera in self.live else None
        )
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value=value,
                    key=frame.camera,
                    partition=part,
                    on_delivery=self._on_delivery(frame),
                    timestamp=round(frame.captured_at * 1000),
                    headers=headers,
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
