"""``sauron worker match``: the match stage as a Kafka consumer-group member.

Every matcher reads the whole compacted watchlist topic (key = person name, value = the
person's embeddings, an empty value = removed) and keeps following it, so enrollments and
removals reach running matchers without a restart.

The frame inside a detections message is checked like the detect stage checks frames
before it is decoded for drawing; a message that fails goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Message

from sauron import SauronError, codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import make_producer
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics, camera_partition
from sauron.bus.worker import Output, StageWorker
from sauron.config import Settings
from sauron.detect.worker import check_frame, stop_on_signals
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.metrics import Metrics, serve

log = logging.getLogger(__name__)


def follow_watchlist(settings: Settings, watchlist: Watchlist) -> TopicTail:
    """Keep ``watchlist`` in step with the watchlist topic (from its beginning)."""
    topic = Topics.from_config(settings.topics).watchlist

    def on_msg(msg: Message) -> None:
        name = (msg.key() or b"").decode("utf-8", "replace")
        value = msg.value()
        if not value:
            watchlist.remove(name)
            return
        try:
            watchlist.upsert(codec.decode_person(value))
        except codec.CodecError as exc:
            log.warning("watchlist entry %r ignored: %s", name, exc)

    tail = TopicTail(settings.bus, topic, on_msg)
    tail.start()
    return tail


def publish_person(settings: Settings, person: codec.Person | None, name: str) -> None:
    """Enroll (or with ``person=None`` remove) a person for every running matcher."""
    producer = make_producer(settings.bus)
    topic = Topics.from_config(settings.topics).watchlist
    value = codec.encode_person(person) if person is not None else None
    producer.produce(topic, key=name, value=value)
    left = producer.flush(settings.bus.connect_timeout_s)
    if left:
        raise RuntimeError(f"watchlist update for {name} was not acknowledged by Kafka")


def match_outputs(
    topics: Topics,
    stage: MatchStage,
    partitions: int,
    frame: codec.Frame,
    det: codec.Detections,
    timings: dict[str, float],
) -> list[Output]:
    """Name the faces of a frame: its annotated result (on the camera's partition of the
    annotated topic) and its new sightings."""
    result, sightings = stage.process(frame, det, timings)
    outs = [
        Output(
            topics.annotated,
            codec.encode_result(result),
            key=frame.camera,
            partition=camera_partition(frame.camera, partitions),
            captured_at=frame.captured_at,
        )
    ]
    outs += [
        Output(topics.sightings, codec.encode_sighting(ev), key=frame.camera) for ev in sightings
    ]
    return outs


def match_handler(settings: Settings, stage: MatchStage, partitions: int) -> Any:
    topics = Topics.from_config(settings.topics)
    max_pixels = settings.detect.max_frame_pixels

    def handle(value: bytes) -> list[Output]:
        frame, det, timings = codec.decode_detections(value)
        check_frame(frame, max_pixels)
        return match_outputs(topics, stage, partitions, frame, det, timings)

    return handle


def watchlist_from_topic(settings: Settings) -> tuple[Watchlist, TopicTail]:
    """A watchlist kept in step with the watchlist topic, read to its end first (or for
    twice the connect timeout, then matching starts with what was read)."""
    watchlist = Watchlist()
    tail = follow_watchlist(settings, watchlist)
    if not tail.caught_up.wait(settings.bus.connect_timeout_s * 2):
        log.warning("watchlist topic not read to its end yet; matching starts anyway")
    return watchlist, tail


class SeparateMatchOff(SauronError):
    """``sauron worker match`` while detect workers do the matching (``match.in_detect``)."""


def build_match_worker(
    settings: Settings, *, group: str | None = None, metrics: Metrics | None = None
) -> tuple[StageWorker, TopicTail]:
    if settings.match.in_detect:
        raise SeparateMatchOff(
            "match.in_detect is on (the default): detect workers name the faces and write "
            "the annotated topic themselves, so a match worker would have nothing to read. "
            "To run a separate match group, set match.in_detect: false (or "
            "SAURON_MATCH__IN_DETECT=false) for every detect and match worker"
        )
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    watchlist, tail = watchlist_from_topic(settings)
    stage = MatchStage(settings.match, watchlist)
    worker = StageWorker(
        settings,
        topic=topics.detections,
        name="match",
        group=group or settings.topics.name("match"),
        handler=match_handler(settings, stage, counts[topics.annotated]),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
    )
    return worker, tail


def run_match_worker(
    settings: Settings, *, group: str | None = None, metrics_port: int | None = None
) -> None:
    """One match worker in this process until SIGTERM/SIGINT (then a clean leave)."""
    metrics = Metrics()
    port = settings.metrics.port if metrics_port is None else metrics_port
    server = serve(metrics, port, settings.metrics.host)
    worker, tail = build_match_worker(settings, group=group, metrics=metrics)
    stop_on_signals(worker.stop_event)
    try:
        worker.run()
    finally:
        tail.stop()
        if server is not None:
            server.stop()
