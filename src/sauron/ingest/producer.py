"""Camera producers: read a source, JPEG-encode each frame, hand it to a sink.

The sink is the bus: a Kafka producer (``sauron ingest``) or the embedded pipeline's
queues (``sauron run``). One thread per camera; decoding happens in FFmpeg/OpenCV, which
release the GIL, so cameras run side by side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sauron.config import CameraConfig
from sauron.imaging import encode_jpeg
from sauron.ingest.sources import SourceError, SourceOptions, open_source
from sauron.types import Frame

log = logging.getLogger(__name__)


def source_options(cam: CameraConfig) -> SourceOptions:
    return SourceOptions(
        max_width=cam.max_width, max_fps=cam.max_fps, realtime=cam.realtime, loop=cam.loop
    )


def camera_frames(cam: CameraConfig, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Frames of one camera, numbered from 0, stamped with their capture time."""
    source = open_source(cam.source, source_options(cam))
    try:
        for number, bgr in enumerate(source.frames()):
            if stop is not None and stop.is_set():
                return
            captured = time.time()
            yield Frame(cam.name, number, captured, encode_jpeg(bgr, cam.jpeg_quality))
    finally:
        source.close()


@dataclass
class CameraStatus:
    frames: int = 0
    finished: bool = False
    error: str | None = None


@dataclass
class IngestGroup:
    """Runs one producer thread per camera into ``sink``; records counts and failures."""

    cameras: list[CameraConfig]
    sink: Callable[[Frame], None]
    stop: threading.Event = field(default_factory=threading.Event)
    status: dict[str, CameraStatus] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, cam: CameraConfig) -> None:
        st = self.status[cam.name]
        try:
            for frame in camera_frames(cam, self.stop):
                self.sink(frame)
                st.frames += 1
        except SourceError as exc:
            st.error = str(exc)
            log.error("camera %s: %s", cam.name, exc)
        finally:
            st.finished = True
            log.info("camera %s: ingest ended after %d frames", cam.name, st.frames)

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
        for t in self.threads:
            t.join(timeout)
