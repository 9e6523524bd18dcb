"""The live hub: the newest annotated frame of every camera, its rate, delay and state.

Fed from any thread (the embedded pipeline's ``on_result`` callback, or a Kafka tail of
the annotated topic); read by the MJPEG streams and the status events on the event
loop. Frames are shown in frame order: a frame older than the one on screen (frame
partitioning delivers out of order) is skipped rather than shown late, except with a
later capture time, which is a camera restart numbering its frames from 0 again.

The cameras listed are those of this server's settings, those whose frames
arrived, and those an ingest process reports (``<prefix>.cameras``, read by
``kafka_feed.CameraReportFeed``): the report also says how the camera is on the ingest
side (running, reconnecting, failed...), even when nobody here watches its frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sauron.codec import CameraReport
from sauron.imaging import ImageDecodeError
from sauron.store.snapshots import annotated_frame
from sauron.types import Result

log = logging.getLogger(__name__)

_WINDOW_S = 5.0
#: The most cameras one web server lists.
MAX_CAMERAS = 4096
#: an ingest report older than this (five of its intervals) is out of date: ingest gone
REPORT_STALE_S = 10.0


@dataclass
class _Feed:
    name: str
    result: Result | None = None
    number: int = -1
    version: int = 0
    last_seen: float = 0.0  # time.monotonic() of the last frame
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    skipped: int = 0
    jpeg: bytes = b""
    jpeg_version: int = -1
    report: CameraReport | None = None
    reported_at: float = 0.0  # time.monotonic() the report arrived


def _ingest(feed: _Feed, now: float) -> dict[str, Any] | None:
    """The camera as its ingest process last reported it (None: never reported)."""
    r = feed.report
    if r is None:
        return None
    age = now - feed.reported_at
    return {
        "state": r.state,
        "frames": r.frames,
        "error": r.error,
        "restarts": r.restarts,
        "host": r.host,
        "age_s": round(age, 1),
        "stale": age > REPORT_STALE_S,
    }


class LiveHub:
    def __init__(
        self, *, privacy_blur: bool = False, stale_after_s: float = 5.0, quality: int = 80
    ) -> None:
        self.privacy_blur = privacy_blur
        self.stale_after_s = stale_after_s
        self.quality = quality
        self._lock = threading.Lock()
        self._feeds: dict[str, _Feed] = {}
        self.refused = 0  # frames and reports of cameras past MAX_CAMERAS
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        #: the cameras' own states when the pipeline runs here (``camera-NAME`` ->
        #: ``reconnecting``, ...): a camera without frames that is reconnecting says so
        self.source_states: Callable[[], dict[str, str]] | None = None

    def register(self, camera: str) -> None:
        """A camera that should be listed even before its first frame."""
        with self._lock:
            self._feed(camera)

    def _feed(self, camera: str) -> _Feed | None:
        """The camera's feed, made if new (caller holds the lock); None past
        :data:`MAX_CAMERAS` (whoever writes the topics could name cameras without end)."""
        feed = self._feeds.get(camera)
        if feed is None:
            if len(self._feeds) >= MAX_CAMERAS:
                self.refused += 1
                if self.refused % 1000 == 1:
                    log.warning(
                        "live: %d cameras listed already; camera %s not listed (%d refused)",
                        MAX_CAMERAS,
                        camera,
                        self.refused,
                    )
                return None
            feed = self._feeds[camera] = _Feed(camera)
        return feed

    def report(self, report: CameraReport) -> None:
        """An ingest process's report of a camera: lists it, says how it is there."""
        with self._lock:
            feed = self._feed(report.camera)
            if feed is None:
                return
            if feed.report is None or report.ts >= feed.report.ts:
                feed.report, feed.reported_at = report, time.monotonic()

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._feeds)

    def add(self, result: Result) -> None:
        """A processed frame (the pipeline's ``on_result`` callback); any thread."""
        cam, num = result.frame.camera, result.frame.number
        now = time.monotonic()
        with self._lock:
            feed = self._feed(cam)
            if feed is None:
                return
            # An older number captured earlier is a late frame; captured later, a camera
            # that restarted and numbers from 0 again.
            shown_at = feed.result.frame.captured_at if feed.result is not None else 0.0
            if num <= feed.number and result.frame.captured_at <= shown_at:
                feed.skipped += 1
                return
            feed.result, feed.number, feed.last_seen = result, num, now
            feed.version += 1
            feed.arrivals.append(now)
            feed.latencies.append(result.latency_ms)
            waiters = list(self._waiters.get(cam, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed: that viewer is gone
                loop.call_soon_threadsafe(event.set)

    def status(self) -> list[dict[str, Any]]:
        """Per camera: state, frames/s, latency, names in view, and the ingest's report.

        The state is ``live`` while frames arrive here; otherwise what the ingest side
        reports (``running``, ``starting``, ``reconnecting``, ``stopped``, ``failed``),
        else ``reconnecting`` when this process's own camera is, else ``stopped`` (frames
        came, then stopped) or ``waiting`` (none yet)."""
        now = time.monotonic()
        out = []
        sources = self.source_states() if self.source_states is not None else {}
        with self._lock:
            feeds = list(self._feeds.values())
            for f in feeds:
                recent = [t for t in f.arrivals if now - t <= _WINDOW_S]
                if f.result is None:
                    state = "waiting"
                elif now - f.last_seen > self.stale_after_s:
                    state = "stopped"
                else:
                    state = "live"
                ingest = _ingest(f, now)
                if state != "live" and ingest is not None and not ingest["stale"]:
                    state = str(ingest["state"])
                elif state != "live" and sources.get(f"camera-{f.name}") == "reconnecting":
                    state = "reconnecting"
                span = min(_WINDOW_S, now - recent[0]) if len(recent) > 1 else 0.0
                fps = (len(recent) - 1) / span if span > 0 else 0.0
                names = sorted({n for n in f.result.detections.names if n}) if f.result else []
                out.append(
                    {
                        "camera": f.name,
                        "state": state,
                        "fps": round(fps, 1),
                        "latency_ms": round(statistics.median(f.latencies), 1)
                        if f.latencies
                        else None,
                        "frame": f.number if f.result else None,
                        "last_seen_s": round(now - f.last_seen, 1) if f.result else None,
                        "faces": len(f.result.detections) if f.result else 0,
                        "names": names if state == "live" else [],
                        "skipped": f.skipped,
                        "ingest": ingest,
                    }
                )
        return sorted(out, key=lambda d: d["camera"])

    def in_view(self) -> list[tuple[str, str]]:
        """(person, camera) of every watched person on a live camera's newest frame."""
        return [(n, cam["camera"]) for cam in self.status() for n in cam["names"]]

    def _render(self, result: Result) -> bytes:
        """The frame as a viewer sees it: boxes and names drawn (here, on demand, unless
        the matcher drew them already: ``match.draw``), unknown faces blurred if asked.
        Only the newest frame of a watched camera is ever rendered."""
        try:
            return annotated_frame(result, privacy_blur=self.privacy_blur, quality=self.quality)
        except ImageDecodeError as exc:
            log.warning(
                "live: camera %s frame %d: %s", result.frame.camera, result.frame.number, exc
            )
            return result.frame.jpeg

    def latest(self, camera: str) -> tuple[int, bytes] | None:
        """(version, JPEG) of the camera's newest frame, privacy-blurred if configured."""
        with self._lock:
            feed = self._feeds.get(camera)
            if feed is None or feed.result is None:
                return None
            if feed.jpeg_version == feed.version:
                return feed.version, feed.jpeg
            version, result = feed.version, feed.result
        jpeg = self._render(result)
        with self._lock:
            if feed.version == version:
                feed.jpeg, feed.jpeg_version = jpeg, version
        return version, jpeg

    async def frames(self, camera: str, max_fps: float) -> AsyncIterator[bytes]:
        """Each new frame of a camera as it arrives, at most ``max_fps`` a second."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        key = (loop, event)
        with self._lock:
            self._waiters.setdefault(camera, set()).add(key)
        try:
            sent = -1
            while True:
                event.clear()  # before looking, so a frame added meanwhile wakes us
                got = self.latest(camera)
                if got is not None and got[0] != sent:
                    sent = got[0]
                    yield got[1]
                    await asyncio.sleep(1.0 / max_fps)
                    continue
                try:
                    await asyncio.wait_for(event.wait(), timeout=5.0)
                except TimeoutError:
                    if got is not None:  # keep the connection alive on a stopped camera
                        yield got[1]
        finally:
            with self._lock:
                self._waiters.get(camera, set()).discard(key)
