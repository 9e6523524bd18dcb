"""The recorder: turns processed frames into stored sightings and alerts.

It is fed :class:`~sauron.types.Result` objects (``sauron run``'s ``on_result``
callback, or the annotated topic in ``sauron worker record``) and works on its own
thread with a bounded queue, so a slow database never slows matching: when the queue is
full the oldest frame is dropped and counted.

Not every frame's face becomes a row: a tracked face is stored when it first appears,
when its identity changes, and then at most every ``sighting_interval_s`` seconds (its
embedding changes only when the tracker refreshes it anyway). Named faces also feed the
:class:`~sauron.match.appearances.AppearanceTracker`; a new appearance is stored as an alert
and published at once. A stranger's track, grouped into a visitor as it ends, raises an
alert too when it is a visitor's return that ``visitors.alert_cameras`` or
``visitors.alert_visits`` asks for (``record/visitors.py``): stored and published the same
way, its person "visitor <id>".
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

import numpy as np

from sauron.config import StoreConfig
from sauron.imaging import ImageDecodeError, decode_jpeg
from sauron.match.appearances import AlertPublisher, Appearance, AppearanceTracker, alert_event
from sauron.match.quality import face_quality
from sauron.queues import Empty, LatestQueue, QueueClosed
from sauron.record.visitors import VisitorAlert, VisitorGrouper
from sauron.store.db import NewSighting, Store
from sauron.store.snapshots import face_snapshot
from sauron.types import Result, Sighting

log = logging.getLogger(__name__)

Done = Callable[[], None]


class AppearanceWatcher(Protocol):
    """Told what the recorder sees (``record/mqtt.py``): every frame handed over (on the
    caller's thread: cheap), and on the recorder's thread each appearance that started
    (once stored as an alert, with the frame that started it) or grew, and each
    returning visitor's alert once stored."""

    def frame(self, result: Result) -> None: ...

    def started(self, app: Appearance, result: Result) -> None: ...

    def updated(self, app: Appearance) -> None: ...

    def visitor_alert(self, alert: VisitorAlert, alert_id: int) -> None: ...


@dataclass
class RecorderStats:
    frames: int = 0
    dropped: int = 0
    sightings: int = 0
    alerts: int = 0
    errors: int = 0


@dataclass(eq=False)
class Recorder:
    store: Store
    cfg: StoreConfig
    _: KW_ONLY
    dispatcher: AlertPublisher | None
    watcher: AppearanceWatcher | None = None
    visitors: VisitorGrouper | None = None
    alert_gap_s: float = 3.0
    privacy_blur: bool = False
    queue_size: int = 512
    stats: RecorderStats = field(default_factory=RecorderStats, init=False)

    def __post_init__(self) -> None:
        self.tracker = AppearanceTracker(self.alert_gap_s)
        self._queue: LatestQueue[tuple[Result, Done | None]] = LatestQueue(self.queue_size)
        self._last: dict[tuple[Any, ...], tuple[float, str | None]] = {}
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        # Frames queued or being stored; flush() waits for it to reach zero.
        self._pending = 0
        self._late: set[int] = set()  # ids of the queued late results (Result.late)
        self._done = threading.Condition()

    def start(self) -> Recorder:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def restart(self) -> None:
        """Start a new thread on the same queue after the old one died."""
        if not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def add(self, result: Result, on_done: Done | None = None) -> None:
        """Queue a processed frame (the pipeline's ``on_result`` callback).

        ``on_done`` is called once the frame is finished with: stored, dropped from a full
        queue (counted), or not worth storing (no faces); the Kafka feed commits the
        frame's offset only then, so frames still queued at a crash are read again."""
        if self.watcher is not None:
            self._tell(self.watcher.frame, result)
        for late in result.late:  # an earlier frame's face, named only now
            with self._done:
                self._late.add(id(late))
            self._enqueue(late, None)
        self._enqueue(result, on_done)

    def _enqueue(self, result: Result, on_done: Done | None) -> None:
        if result.detections.label != "face" or not len(result.detections):
            if on_done is not None:
                on_done()
            with self._done:
                self._late.discard(id(result))
            return
        with self._done:
            self._pending += 1
        dropped = self._queue.put((result, on_done))
        if dropped:
            self.stats.dropped += len(dropped)
            self._finished(dropped)

    def _tell(self, fn: Callable[..., None], *args: Any) -> None:
        """Tell the watcher; its failure is logged, never the recorder's."""
        try:
            fn(*args)
        except Exception:
            log.exception("recorder: %s failed", getattr(fn, "__qualname__", fn))

    def _finished(self, items: list[tuple[Result, Done | None]]) -> None:
        for _, on_done in items:
            if on_done is not None:
                on_done()
        with self._done:
            self._late.difference_update(id(result) for result, _ in items)
            self._pending -= len(items)
            self._done.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued frame is stored."""
        with self._done:
            return self._done.wait_for(lambda: self._pending <= 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_flush = time.monotonic()
        stopping = False
        while not stopping:
            batch: list[tuple[Result, Done | None]] = []
            try:
                batch.append(self._queue.get(timeout=0.5))
                while len(batch) < 32:
                    batch.append(self._queue.get(timeout=0))
            except Empty:
                pass
            except QueueClosed:
                stopping = True
            if batch:
                try:
                    self._record([result for result, _ in batch])
                except Exception:  # the store was unreachable: count it and go on
                    self.stats.errors += 1
                    log.exception("recorder: %d frames not stored", len(batch))
            idle = not len(self._queue)
            if stopping or idle or time.monotonic() - last_flush > 1.0:
                last_flush = time.monotonic()
                self._flush_appearances()
                self._end_visits(everything=stopping)
            if batch:  # stored, with the alert updates they caused
                self._finished(batch)

    def _flush_appearances(self) -> None:
        try:
            for app in self.tracker.dirty():
                if app.alert_id is not None:
                    span = app.span
                    self.store.extend_alert(
                        app.alert_id, span.last_seen_at, span.frames, span.distance
                    )
                    if self.watcher is not None:
                        self._tell(self.watcher.updated, app)
        except Exception:
            self.stats.errors += 1
            log.exception("recorder: alert updates not stored")

    def _end_visits(self, everything: bool) -> None:
        if self.visitors is None:
            return
        try:
            self.visitors.end_idle(everything)
        except Exception:
            self.stats.errors += 1
            log.exception("recorder: visitors not grouped")
        for alert in self.visitors.take_alerts():  # those of stills too, grouped at once
            try:
                self._visitor_alert(alert)
            except Exception:
                self.stats.errors += 1
                log.exception("recorder: visitor %d's alert not stored", alert.visitor_id)

    def _visitor_alert(self, alert: VisitorAlert) -> None:
        """Store a returning visitor's alert and publish it as a watched person's is."""
        stored = self.store.add_alert(
            alert.label,
            alert.camera,
            alert.started_at,
            alert.distance,
            alert.snapshot,
            last_seen_at=alert.ended_at,
            frames=alert.frames,
            visitor_id=alert.visitor_id,
        )
        self.stats.alerts += 1
        log.info(
            "alert %d: %s back on camera %s (visit %d; %s)",
            stored.id,
            alert.label,
            alert.camera,
            alert.visits,
            ", ".join(alert.reasons),
        )
        if self.dispatcher is not None:
            self.dispatcher.publish(alert.event(stored.id))
        if self.watcher is not None:
            self._tell(self.watcher.visitor_alert, alert, stored.id)

    def _wanted(self, result: Result, i: int) -> bool:
        if result.frame.still:  # a photo of an image folder: its own scene, always kept
            return True
        det = result.detections
        track = int(det.track_ids[i])
        key: tuple[Any, ...] = (
            (result.frame.camera, "t", track)
            if track >= 0
            else (result.frame.camera, "f", i, det.names[i])
        )
        ts, person = result.frame.captured_at, det.names[i]
        last = self._last.get(key)
        if (
            last is not None
            and last[1] == person
            and 0 <= ts - last[0] < self.cfg.sighting_interval_s
        ):
            return False
        self._last[key] = (ts, person)
        return True

    def _record(self, batch: list[Result]) -> None:
        rows: list[NewSighting] = []
        late: list[NewSighting] = []
        with self._done:
            is_late = [id(result) in self._late for result in batch]
        for result, was_late in zip(batch, is_late, strict=True):
            self.stats.frames += 1
            (late if was_late else rows).extend(self._sightings(result))
        if late:  # the frame's face is stored already, unnamed: named now
            rows.extend(self.store.name_late(late))
        if rows:
            self.stats.sightings += len(self.store.add_sightings(rows))
        if len(self._last) > 10000:
            newest = max(r.frame.captured_at for r in batch)
            self._last = {k: v for k, v in self._last.items() if newest - v[0] < 60}
            self.tracker.close_idle(newest)

    def _sightings(self, result: Result) -> list[NewSighting]:
        det, frame = result.detections, result.frame
        decoded: list[np.ndarray] = []

        def snapshot(i: int) -> bytes | None:
            if not decoded:
                try:
                    decoded.append(decode_jpeg(frame.jpeg))
                except ImageDecodeError as exc:
                    log.warning("recorder: camera %s frame %d: %s", frame.camera, frame.number, exc)
                    return None
            x0, y0, x1, y1 = (int(v) for v in det.xyxy[i])
            return face_snapshot(
                decoded[0],
                (x0, y0, x1, y1),
                size=self.cfg.snapshot_size,
                blur=self.privacy_blur and det.names[i] is None,
            )

        # Size and pose only: the frame is not decoded yet here (only for snapshots), and
        # decoding it for the sharpness of every unnamed face would take the recorder from
        # 224 to 861 decodes of 900 frames in the visitors benchmark; passing pixels only
        # where a frame happens to be decoded would mix qualities with and without
        # sharpness within one track (with pixels a face scores at most as much).
        quality = face_quality(det) if self.visitors is not None else None
        out: list[NewSighting] = []
        for i in range(len(det)):
            person = det.names[i]
            dist = float(det.distances[i])
            emb = det.embeddings[i] if det.embeddings.shape[1] else None
            if emb is not None and not np.isfinite(emb).all():
                emb = None
            if self.visitors is not None and quality is not None:
                self.visitors.face(
                    frame.camera,
                    int(det.track_ids[i]),
                    frame.captured_at,
                    person,
                    emb,
                    float(quality[i]),
                    functools.partial(snapshot, i),
                )
            alert_new = False
            if person is not None:
                app, alert_new = self.tracker.observe(frame.camera, person, frame.captured_at, dist)
            wanted = self._wanted(result, i)  # always: it remembers what was stored
            if not (alert_new or wanted):
                continue
            snap = snapshot(i)
            if not decoded:  # the frame does not decode
                return out
            seen = vars(Sighting.of(frame, det, i))
            out.append(NewSighting(**seen, face=i, embedding=emb, snapshot=snap))
            if alert_new and person is not None:
                alert = self.store.add_alert(person, frame.camera, frame.captured_at, dist, snap)
                app.alert_id = alert.id
                self.stats.alerts += 1
                if self.dispatcher is not None:
                    self.dispatcher.publish(
                        alert_event(alert.id, person, frame.camera, frame.captured_at, dist)
                    )
                if self.watcher is not None:
                    self._tell(self.watcher.started, app, result)
        return out
