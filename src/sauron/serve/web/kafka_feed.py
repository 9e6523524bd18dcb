"""The web server's Kafka readers.

* :class:`KafkaLiveFeed`: live views read only the partitions of the cameras someone is
  watching (``camera_partition(camera, partitions)`` of ``<prefix>.annotated``), from
  their end, and stop reading a partition a while after its last viewer left.
* :class:`AlertFeed`: follows ``<prefix>.alerts`` from its end and pushes each alert to
  this server's open pages, whichever server's recorder raised it.
* :class:`CameraReportFeed`: reads ``<prefix>.cameras`` from its start (a compacted topic:
  the newest report of every camera) and on, so the live views list every camera an
  ingest process reads, with its health there, whatever this server's settings name.

Recording (the consumer group ``<prefix>.store``) is the record stage's:
``sauron worker record`` (``record/kafka_worker.py``).
"""

from __future__ import annotations

import json
import logging
import threading
import time

from confluent_kafka import Message

from sauron import codec
from sauron.bus.client import end_offsets
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics, camera_partition
from sauron.config import Settings
from sauron.serve.alerts import Broadcaster
from sauron.serve.web.live import LiveHub

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


class CameraReportFeed:
    def __init__(self, settings: Settings, hub: LiveHub) -> None:
        self.hub = hub
        self.tail = TopicTail(settings.bus, settings.topics.name("cameras"), self._on_msg)

    def _on_msg(self, msg: Message) -> None:
        try:
            self.hub.report(codec.decode_camera_report(msg.value() or b""))
        except codec.CodecError as exc:
            log.warning("cameras topic: a report was ignored: %s", exc)

    def start(self) -> CameraReportFeed:
        self.tail.start()
        return self

    def stop(self) -> None:
        self.tail.stop()
