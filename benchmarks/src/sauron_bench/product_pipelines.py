"""The product's pipelines, assembled for measuring: over a real Kafka broker and embedded.

Both are built from the same pieces ``sauron run`` uses (:mod:`sauron.pipeline`): detect
worker processes (:class:`sauron.detect.kafka_worker.DetectProcesses` or the embedded bus),
the match stage with its drawing, and the annotated-frames topic. The only thing the
benchmark adds is where frames come from (the generated workload instead of camera
sources) and a collector that stamps the moment each annotated frame is available to a
viewer: read back from the annotated topic (Kafka) or handed out by the match stage
(embedded).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np

from sauron import SauronError, codec
from sauron.bus.topics import Topics, frame_partition
from sauron.codec import Person
from sauron.config import Settings, load_settings
from sauron.types import Frame
from sauron_bench.measure import Collector, Record

log = logging.getLogger(__name__)

Sink = Callable[[Frame], Any]


class BenchError(SauronError):
    """A benchmark run could not be carried out (a worker did not start, frames lost)."""


def kafka_settings(
    bootstrap: str,
    *,
    partitions: int,
    tracking: bool,
    embedder: str,
    partitioning: str = "camera",
    max_frame_age_s: float | None = None,
    batch_size: int | None = None,
    in_detect: bool = True,
) -> Settings:
    """Settings of one Kafka run: fresh topics (a unique prefix) and consumer groups."""
    detect: dict[str, Any] = {"embedder": embedder, "tracking": tracking}
    if max_frame_age_s is not None:
        detect["max_frame_age_s"] = max_frame_age_s
    if batch_size is not None:
        detect["batch_size"] = batch_size
    return load_settings(
        None,
        {
            "bus": {"type": "kafka", "bootstrap_servers": bootstrap},
            "topics": {
                "prefix": f"bench-{uuid.uuid4().hex[:10]}",
                "partitions": partitions,
                "partitioning": partitioning,
            },
            "detect": detect,
            "match": {"in_detect": in_detect},
        },
    )


def wait_for_group(bootstrap: str, group: str, members: int, timeout: float = 120.0) -> None:
    """Wait until a consumer group is stable with ``members`` members, each assigned."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=5)
            assigned = [m for m in desc.members if m.assignment and m.assignment.topic_partitions]
            if desc.state == ConsumerGroupState.STABLE and len(assigned) >= members:
                return
        except Exception as exc:  # the group may not exist yet
            log.debug("group %s not ready: %s", group, exc)
        time.sleep(0.25)
    raise BenchError(
        f"consumer group {group} did not reach {members} assigned members within {timeout:.0f} s"
    )


class LagSampler:
    """Samples a consumer group's lag on a topic (high watermark minus committed offset,
    summed over partitions) and the frames in flight end to end, every 0.5 s."""

    def __init__(
        self, bootstrap: str, group: str, topic: str, partitions: int, in_flight: Callable[[], int]
    ) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._in_flight = in_flight
        self.lag: list[int] = []
        self.flight: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-lag")

    def _sample(self) -> None:
        committed = self._consumer.committed(self._tps, timeout=5)
        total = 0
        for tp in committed:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            total += max(0, high - max(tp.offset, 0))
        self.lag.append(total)
        self.flight.append(self._in_flight())

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self._sample()
            except Exception as exc:  # a slow broker answer must not end the run
                log.debug("lag sample failed: %s", exc)

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
        return {
            "consumer_lag_max": max(self.lag, default=0),
            "consumer_lag_mean": round(float(np.mean(self.lag)), 1) if self.lag else 0.0,
            "in_flight_max": max(self.flight, default=0),
        }


class KafkaPipeline:
    """Detect workers (processes), a matcher and a collector around one broker."""

    name = "kafka"

    def __init__(self, settings: Settings, workers: int, people: list[Person]) -> None:
        self.settings = settings
        self.workers = workers
        self.people = people
        self.topics = Topics.from_config(settings.topics)
        self.collector = Collector()
        self._procs: list[Any] = []
        self._matcher: Any = None
        self._threads: list[threading.Thread] = []
        self._tails: list[Any] = []
        self._producer: Any = None
        self._partitions = 0

    @property
    def bootstrap(self) -> str:
        return self.settings.bus.bootstrap_servers

    @property
    def detect_group(self) -> str:
        return self.settings.topics.name("detect")

    def start(self) -> KafkaPipeline:
        from sauron.bus.admin import ensure_topics
        from sauron.bus.client import make_producer
        from sauron.detect.kafka_worker import DetectProcesses
        from sauron.match.kafka_worker import build_match_worker, topic_namer
        from sauron.match.watchlist_topic import publish_person

        counts = ensure_topics(self.settings)
        self._partitions = counts[self.topics.frames]
        for person in self.people:
            publish_person(self.settings, person, person.name)
        self._tails.append(self._collector_tail())
        self._procs = DetectProcesses(self.settings, self.workers, namer=topic_namer).procs
        if not self.settings.match.in_detect:  # a match worker of its own, as a thread
            self._matcher, watch_tail = build_match_worker(self.settings)
            self._tails.append(watch_tail)
            t = threading.Thread(target=self._matcher.run, name="bench-match", daemon=True)
            t.start()
            self._threads.append(t)
        self._producer = make_producer(self.settings.bus)
        wait_for_group(self.bootstrap, self.detect_group, min(self.workers, self._partitions))
        if self._matcher is not None:
            wait_for_group(self.bootstrap, self.settings.topics.name("match"), 1)
        return self

    def _collector_tail(self) -> Any:
        """Read the annotated topic from its start."""
        from sauron.bus.tail import TopicTail

        tail = TopicTail(self.settings.bus, self.topics.annotated, self._on_annotated)
        tail.start()
        while not tail.ready.wait(0.1) and tail.is_alive():
            pass
        if tail.error is not None or not tail.ready.is_set():
            raise BenchError(f"cannot read {self.topics.annotated}: {tail.error}")
        return tail

    def _on_annotated(self, msg: Any) -> None:
        now = time.time()
        result = codec.decode_result(msg.value())
        self.collector.add(
            Record(
                result.frame.camera,
                result.frame.number,
                result.frame.captured_at,
                now,
                result.timings_ms,
                result.detections.names,
            )
        )

    def sink_factory(self) -> Sink:
        topic, mode = self.topics.frames, self.settings.topics.partitioning
        producer, parts = self._producer, self._partitions

        def sink(frame: Frame) -> None:
            value = codec.encode_frame(frame)
            part = frame_partition(frame.camera, frame.number, parts, mode)
            while True:
                try:
                    producer.produce(topic, value=value, key=frame.camera, partition=part)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)

        return sink

    def lag_sampler(self, in_flight: Callable[[], int]) -> LagSampler:
        return LagSampler(
            self.bootstrap, self.detect_group, self.topics.frames, self._partitions, in_flight
        )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            p.join(20)
            if p.is_alive():
                log.warning("detect worker %s did not stop, killing it", p.pid)
                p.kill()
                p.join(5)
        if self._matcher is not None:
            self._matcher.stop_event.set()
        for t in self._threads:
            t.join(20)
        for tail in self._tails:
            tail.stop()
        for tail in self._tails:
            tail.join(10)


@dataclass(eq=False)
class EmbeddedPipeline:
    """The embedded bus (detect processes fed by partition queues) and the match stage."""

    name = "embedded"

    settings: Settings
    workers: int
    people: list[Person]
    _: KW_ONLY
    block: bool
    collector: Collector = field(default_factory=Collector, init=False)
    _bus: Any = field(default=None, init=False)

    def start(self) -> EmbeddedPipeline:
        from sauron.bus.embedded import EmbeddedBus
        from sauron.detect.stage import worker_stage
        from sauron.match.stage import MatchStage
        from sauron.match.watchlist import Watchlist

        stage = MatchStage(self.settings.match, Watchlist(self.people))

        def on_output(item: Any) -> None:
            frame, det, timings, _error = item
            if det is None:
                return
            result, _ = stage.process(frame, det, timings)
            self.collector.add(
                Record(
                    frame.camera,
                    frame.number,
                    frame.captured_at,
                    time.time(),
                    result.timings_ms,
                    result.detections.names,
                )
            )

        self._bus = EmbeddedBus(
            self.settings,
            processes=self.workers,
            make_stage=worker_stage,
            block=self.block,
            on_output=on_output,
        ).start()
        return self

    def sink_factory(self) -> Sink:
        submit: Sink = self._bus.submit
        return submit

    @property
    def dropped(self) -> int:
        return int(self._bus.stats.dropped) if self._bus is not None else 0

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()


def embedded_settings(*, tracking: bool, embedder: str, partitioning: str = "camera") -> Settings:
    return load_settings(
        None,
        {
            "bus": {"type": "embedded"},
            "topics": {"partitioning": partitioning},
            "detect": {"embedder": embedder, "tracking": tracking},
        },
    )
