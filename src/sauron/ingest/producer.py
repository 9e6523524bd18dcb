"""Camera producers: read a source, JPEG-encode each frame, hand it to a sink.

The sink is the bus: a Kafka producer (``sauron ingest``) or the embedded pipeline's
queues (``sauron run``). One thread per camera; decoding happens in FFmpeg/OpenCV, which
release the GIL, so cameras run side by side.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sauron.config import CameraConfig
from sauron.imaging import encode_jpeg
from sauron.ingest.sources import FolderSource, Source, SourceError, SourceOptions, open_source
from sauron.logs import redact
from sauron.types import Frame

log = logging.getLogger(__name__)


def source_options(cam: CameraConfig) -> SourceOptions:
    return SourceOptions(
        max_width=cam.max_width, max_fps=cam.max_fps, realtime=cam.realtime, loop=cam.loop
    )


def camera_frames(
    cam: CameraConfig,
    stop: threading.Event | None = None,
    on_open: Callable[[Source], None] | None = None,
) -> Iterator[Frame]:
    """Frames of one camera, numbered from 0, stamped with their capture time;
    ``on_open`` is handed the opened source (to read its state). An image folder's frames
    are stills: each photo is its own scene."""
    source = open_source(cam.source, source_options(cam))
    still = isinstance(source, FolderSource)
    if on_open is not None:
        on_open(source)
    try:
        for number, bgr in enumerate(source.frames()):
            if stop is not None and stop.is_set():
                return
            captured = time.time()
            yield Frame(cam.name, number, captured, encode_jpeg(bgr, cam.jpeg_quality), still=still)
    finally:
        source.close()


#: A camera thread that died of an unexpected error is restarted after this many seconds,
#: at most ``MAX_THREAD_RESTARTS`` times in a row without a frame in between.
THREAD_RESTART_S = 1.0
MAX_THREAD_RESTARTS = 5


@dataclass
class CameraStatus:
    frames: int = 0
    finished: bool = False
    error: str | None = None
    restarts: int = 0  # camera threads restarted after an unexpected error
    source: Source | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        """starting, running, reconnecting (a live camera that is down), stopped, failed."""
        if self.finished:
            return "failed" if self.error else "stopped"
        if self.source is None:
            return "starting"
        return self.source.state


@dataclass
class IngestGroup:
    """Runs one producer thread per camera into ``sink``; records counts and failures.

    A camera thread that dies of an unexpected error is reported and restarted (bounded);
    a camera that ends is handed to ``on_end``. With ``health`` (a Metrics), each camera
    is a health component ``camera-NAME`` that beats on every frame."""

    cameras: list[CameraConfig]
    sink: Callable[[Frame], None]
    stop: threading.Event = field(default_factory=threading.Event)
    status: dict[str, CameraStatus] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    on_end: Callable[[str], None] | None = None
    health: Any = None

    def _run(self, cam: CameraConfig) -> None:
        st = self.status[cam.name]
        comp = self.health.health.component(f"camera-{cam.name}") if self.health else None
        failures = 0
        try:
            while not self.stop.is_set():
                before = st.frames
                try:
                    self._pump(cam, st, comp)
                    return
                except SourceError as exc:
                    st.error = str(exc)
                    log.error("camera %s: %s", cam.name, exc)
                    return
                except Exception as exc:  # a bug or a library failure: restart, report
                    failures = 0 if st.frames > before else failures + 1
                    if failures > MAX_THREAD_RESTARTS:
                        st.error = redact(
                            f"camera thread failed {failures} times in a row: {exc!r}"
                        )
                        log.error("camera %s: %s; giving up", cam.name, st.error)
                        return
                    st.restarts += 1
                    log.exception(
                        "camera %s: its thread failed; restarting it in %.0f s (restart %d)",
                        *(cam.name, THREAD_RESTART_S, st.restarts),
                    )
                    self.stop.wait(THREAD_RESTART_S)
        finally:
            st.finished = True
            if comp is not None:
                comp.state = st.state
            log.info("camera %s: ingest ended after %d frames", cam.name, st.frames)
            if self.on_end is not None:
                self.on_end(cam.name)

    def _pump(self, cam: CameraConfig, st: CameraStatus, comp: Any) -> None:
        def opened(source: Source) -> None:
            st.source = source

        offset = st.frames  # a restarted camera numbers on, so frame numbers stay unique
        for frame in camera_frames(cam, self.stop, opened):
            if offset:
                frame = dataclasses.replace(frame, number=frame.number + offset)
            self.sink(frame)
            st.frames += 1
            if comp is not None:
                comp.beat(frames=st.frames)

    def start(self) -> IngestGroup:
        for cam in self.cameras:
            self.status[cam.name] = CameraStatus()
            t = threading.Thread(
                target=self._run, args=(cam,), name=f"ingest-{cam.name}", daemon=True
            )
            t.start()
            self.threads.append(t)
        return self

    def done(self) -> bool:
        return all(s.finished for s in self.status.values())

    def join(self, timeout: float | None = None) -> None:
        """Wait for every camera thread, ``timeout`` seconds for all of them together."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
