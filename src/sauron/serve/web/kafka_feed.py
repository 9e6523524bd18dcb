"""The web server's Kafka readers.

* :class:`KafkaLiveFeed`: live views read only the partitions of the cameras someone is
  watching (``camera_partition(camera, partitions)`` of ``<prefix>.annotated``), from
  their end, and stop reading a partition a while after its last viewer left.
* :class:`AlertFeed`: follows ``<prefix>.alerts`` from its end and pushes each alert to
  this server's open pages, whichever server's recorder raised it.
* :class:`KafkaRecorderFeed`: a member of the consumer group ``<prefix>.store`` on the
  annotated topic, feeding the recorder, so several web servers share the recording.
  A new group starts at the oldest retained frame. A frame's offset is committed only
  once the recorder is done with it (stored, or dropped and counted when its queue was
  full): a crash loses nothing, and the frames stored in the second before it may be
  stored again (at-least-once, like the workers).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import Message

from sauron import codec
from sauron.bus.client import consume_ready, end_offsets, make_consumer
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics, camera_partition
from sauron.bus.worker import OffsetTracker
from sauron.config import Settings
from sauron.serve.alerts import Broadcaster
from sauron.serve.web.live import LiveHub
from sauron.store.recorder import Recorder

log = logging.getLogger(__name__)

LINGER_S = 30.0


class KafkaLiveFeed:
    def __init__(self, settings: Settings, hub: LiveHub) -> None:
        self.settings = settings
        self.hub = hub
        self.topic = Topics.from_config(settings.topics).annotated
        self._lock = threading.Lock()
        self._viewers: dict[int, set[str]] = {}
        self._counts: dict[str, int] = {}
        self._tails: dict[int, TopicTail] = {}
        self._idle_since: dict[int, float] = {}
        self._partitions: int | None = None
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="live-reaper", daemon=True)
        self._reaper.start()

    def _partition_count(self) -> int:
        if self._partitions is None:
            self._partitions = len(end_offsets(self.settings.bus, self.topic)) or 1
        return self._partitions

    def want(self, camera: str) -> None:
        """A viewer opened ``camera``: read its partition (only) from now on."""
        part = camera_partition(camera, self._partition_count())
        with self._lock:
            self._counts[camera] = self._counts.get(camera, 0) + 1
            self._viewers.setdefault(part, set()).add(camera)
            self._idle_since.pop(part, None)
            if part in self._tails:
                return
            start = end_offsets(self.settings.bus, self.topic).get(part, 0)
            tail = TopicTail(
                self.settings.bus,
                self.topic,
                self._on_msg,
                partitions=[part],
                start={part: max(0, start - 1)},
            )
            self._tails[part] = tail
        tail.start()
        log.info("live: reading %s partition %d for camera %s", self.topic, part, camera)

    def release(self, camera: str) -> None:
        part = camera_partition(camera, self._partition_count())
        with self._lock:
            self._counts[camera] = max(0, self._counts.get(camera, 0) - 1)
            if self._counts[camera] == 0:
                self._viewers.get(part, set()).discard(camera)
            if not self._viewers.get(part):
                self._idle_since[part] = time.monotonic()

    def _on_msg(self, msg: Message) -> None:
        key = (msg.key() or b"").decode("utf-8", "replace")
        with self._lock:
            wanted = key in self._viewers.get(msg.partition() or 0, set())
        if not wanted:
            return
        try:
            self.hub.add(codec.decode_result(msg.value() or b""))
        except codec.CodecError as exc:
            log.warning("live: annotated frame ignored: %s", exc)

    def _reap(self) -> None:
        while not self._stop.wait(2.0):
            now = time.monotonic()
            with self._lock:
                idle = [p for p, t in self._idle_since.items() if now - t > LINGER_S]
                tails = [self._tails.pop(p) for p in idle if p in self._tails]
                for p in idle:
                    self._idle_since.pop(p, None)
            for t in tails:
                t.stop()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            tails = list(self._tails.values())
            self._tails.clear()
        for t in tails:
            t.stop()


class AlertFeed:
    def __init__(self, settings: Settings, broadcaster: Broadcaster) -> None:
        topic = settings.topics.name("alerts")
        self.broadcaster = broadcaster
        self.tail = TopicTail(
            settings.bus, topic, self._on_msg, start=end_offsets(settings.bus, topic)
        )

    def _on_msg(self, msg: Message) -> None:
        try:
            event = json.loads(msg.value() or b"")
        except ValueError:
            log.warning("alerts topic: a message that is not JSON was ignored")
            return
        if isinstance(event, dict) and event.get("v") == 1:
            self.broadcaster.publish(event)

    def start(self) -> AlertFeed:
        self.tail.start()
        return self

    def stop(self) -> None:
        self.tail.stop()


class KafkaRecorderFeed(threading.Thread):
    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        super().__init__(name="recorder-feed", daemon=True)
        self.settings = settings
        self.recorder = recorder
        self.topic = Topics.from_config(settings.topics).annotated
        self.stop_event = threading.Event()

    def start(self) -> KafkaRecorderFeed:  # type: ignore[override]
        super().start()
        return self

    def run(self) -> None:
        # An offset is stored (and committed within a second) only once the recorder is
        # done with that frame and every earlier one of its partition: frames still
        # queued when the server dies are read again by the group. The recorder thread
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
            consumer.close()

    def stop(self) -> None:
        self.stop_event.set()
