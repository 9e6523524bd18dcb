"""``sauron worker record``: the record stage as a member of the consumer group
``<prefix>.store`` on the annotated topic, so several record workers share the cameras.

A new group starts at the oldest retained frame. A frame's offset is committed only once
the recorder is done with it (stored, or dropped and counted when its queue was full): a
crash loses nothing, and the frames stored in the second before it may be stored again
(at least once, like the other workers; the record stage keeps no Kafka transaction).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from sauron import codec
from sauron.bus.client import close_consumer, consume_ready, make_consumer
from sauron.bus.offsets import OffsetTracker
from sauron.bus.process import stop_on_signals
from sauron.bus.topics import Topics
from sauron.config import Settings
from sauron.record.recorder import Done
from sauron.types import Result

log = logging.getLogger(__name__)


class Recording(Protocol):
    """What the feed hands frames to: the record stage (or its recorder alone)."""

    def add(self, result: Result, on_done: Done | None = None) -> None: ...

    def flush(self, timeout: float = 10.0) -> bool: ...


class RecordFeed(threading.Thread):
    def __init__(self, settings: Settings, recorder: Recording) -> None:
        super().__init__(name="recorder-feed", daemon=True)
        self.settings = settings
        self.recorder = recorder
        self.topic = Topics.from_config(settings.topics).annotated
        self.stop_event = threading.Event()

    def start(self) -> RecordFeed:  # type: ignore[override]
        super().start()
        return self

    def run(self) -> None:
        # An offset is stored (and committed within a second) only once the recorder is
        # done with that frame and every earlier one of its partition: frames still
        # queued when the worker dies are read again by the group. The recorder thread
        # only reports; offsets are handled on this thread, the consumer's.
        consumer: Any = make_consumer(self.settings.bus, self.settings.topics.name("store"))
        tracker = OffsetTracker(consumer)
        finished: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

        def forget(_c: Any, parts: list[Any]) -> None:
            tracker.forget(parts)

        consumer.subscribe([self.topic], on_revoke=forget, on_lost=forget)
        try:
            while not self.stop_event.is_set():
                for msg in consume_ready(consumer, 32):
                    if msg.error() is not None:
                        continue
                    done = tracker.add(
                        msg.topic() or self.topic, msg.partition() or 0, msg.offset() or 0, 1
                    )
                    try:
                        result = codec.decode_result(msg.value() or b"")
                    except codec.CodecError as exc:
                        log.warning("recorder: annotated frame ignored: %s", exc)
                        done()
                        continue
                    self.recorder.add(result, on_done=partial(finished.put, done))
                while not finished.empty():
                    finished.get()()
        finally:
            # what is queued is stored and its offsets committed before leaving the group
            self.recorder.flush()
            while not finished.empty():
                finished.get()()
            close_consumer(consumer, "record")

    def stop(self) -> None:
        self.stop_event.set()


def run_record_worker(settings: Settings) -> None:
    """Record until SIGTERM/SIGINT, then store what is queued, commit and leave the group."""
    from sauron.bus.admin import ensure_topics
    from sauron.record.stage import RecordStage

    ensure_topics(settings)
    if settings.bus.exactly_once:
        log.info(
            "record worker: bus.exactly_once applies to the Kafka stages; the record stage "
            "reads at least once (a frame read again stores no sighting twice; an alert "
            "raised just before a crash may be raised again)"
        )
    record = RecordStage(settings).start()
    feed = RecordFeed(settings, record)
    stop_on_signals(feed.stop_event)
    log.info(
        "record worker %d: group %s on %s",
        os.getpid(),
        settings.topics.name("store"),
        feed.topic,
    )
    try:
        feed.run()  # on this thread: the signals stop it
    finally:
        record.stop()
