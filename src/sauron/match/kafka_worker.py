"""``sauron worker match``: the match stage as a Kafka consumer group of its own, and
what names the faces inside the detect workers (``match.in_detect``, the default).

A match worker reads the detections topic and writes the annotated frames and sightings.
With ``match.in_detect`` a detect worker does that itself, with the matcher
:func:`topic_namer` makes in its process (handed to ``sauron.detect.kafka_worker``). Every
matcher follows the watchlist topic (:mod:`sauron.match.watchlist_topic`), so enrollments
and removals reach it without a restart.

The frame inside a detections message is checked like the detect stage checks frames
before it is decoded for drawing; a message that fails goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from sauron import SauronError, codec
from sauron.bus.admin import ensure_topics
from sauron.bus.process import stop_on_signals
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics, camera_partition
from sauron.bus.worker import Output, StageWorker
from sauron.config import Settings
from sauron.detect.frame_checks import check_frame
from sauron.detect.kafka_worker import Matcher
from sauron.match.stage import MatchStage
from sauron.match.watchlist_topic import watchlist_from_topic
from sauron.metrics import Metrics, serve

log = logging.getLogger(__name__)


def match_outputs(
    topics: Topics,
    stage: MatchStage,
    partitions: int,
    frame: codec.Frame,
    det: codec.Detections,
    timings: dict[str, float],
    *,
    with_jpeg: bool = True,
) -> list[Output]:
    """Name the faces of a frame: its annotated result (on the camera's partition of the
    annotated topic; without the frame's JPEG unless ``with_jpeg``, see
    ``bus.annotated_jpeg``) and its new sightings."""
    result, sightings = stage.process(frame, det, timings)
    outs = [
        Output(
            topics.annotated,
            codec.encode_result(result, with_jpeg=with_jpeg),
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
        return match_outputs(
            topics, stage, partitions, frame, det, timings, with_jpeg=settings.bus.annotated_jpeg
        )

    return handle


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


def topic_namer(settings: Settings, partitions: int) -> tuple[Matcher, Callable[[], None]]:
    """What names the faces in a detect worker (``match.in_detect``): the match stage over
    a watchlist that follows the watchlist topic, writing the annotated topic's
    ``partitions``; and what stops following it."""
    topics = Topics.from_config(settings.topics)
    watchlist, tail = watchlist_from_topic(settings)
    stage = MatchStage(settings.match, watchlist)
    outputs = partial(
        match_outputs, topics, stage, partitions, with_jpeg=settings.bus.annotated_jpeg
    )
    return outputs, tail.stop
