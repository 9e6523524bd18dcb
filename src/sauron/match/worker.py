"""``sauron worker match``: the match stage as a Kafka consumer-group member.

Every matcher reads the whole compacted watchlist topic (key = person name, value = the
person's embeddings, an empty value = removed) and keeps following it, so enrollments and
removals reach running matchers without a restart.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Message

from sauron import codec
from sauron.bus.kafka import Output, StageWorker, TopicTail, ensure_topics, make_producer
from sauron.bus.topics import Topics, camera_partition
from sauron.config import Settings
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist

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


def match_handler(settings: Settings, stage: MatchStage, partitions: int) -> Any:
    topics = Topics.from_config(settings.topics)

    def handle(value: bytes) -> list[Output]:
        frame, det, timings = codec.decode_detections(value)
        result, sightings = stage.process(frame, det, timings)
        part = camera_partition(frame.camera, partitions)
        outs = [Output(topics.annotated, codec.encode_result(result), key=frame.camera,
                       partition=part)]
        outs += [Output(topics.sightings, codec.encode_sighting(ev), key=frame.camera)
                 for ev in sightings]
        return outs

    return handle


def build_match_worker(settings: Settings, *, group: str | None = None
                       ) -> tuple[StageWorker, TopicTail]:
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    watchlist = Watchlist()
    tail = follow_watchlist(settings, watchlist)
    if not tail.caught_up.wait(settings.bus.connect_timeout_s * 2):
        log.warning("watchlist topic not read to its end yet; matching starts anyway")
    stage = MatchStage(settings.match, watchlist)
    worker = StageWorker(settings, topic=topics.detections, name="match",
                         group=group or settings.topics.name("match"),
                         handler=match_handler(settings, stage, counts[topics.annotated]),
                         batch_size=settings.detect.batch_size)
    return worker, tail


def run_match_worker(settings: Settings, *, group: str | None = None) -> None:
    from sauron.detect.worker import _stop_on_signals

    worker, tail = build_match_worker(settings, group=group)
    _stop_on_signals(worker.stop_event)
    try:
        worker.run()
    finally:
        tail.stop()
