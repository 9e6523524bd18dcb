"""Event clips: an MP4 (H.264) of each appearance, from ``pre_roll_s`` before it to
``post_roll_s`` after it was last seen.

Every frame the record stage is handed goes, as it came (its JPEG and its detections),
into a per-camera ring buffer bounded by seconds and bytes, on a thread of its own with
a bounded queue (a slow encoder never slows the pipeline: when the queue is full the
oldest frame is dropped and counted). That thread groups the frames' faces into
appearances by capture time with the record stage's own rule
(:class:`~sauron.match.appearances.AppearanceTracker`: a gap longer than the alert gap
ends one): one per watched person and camera (the alert's clip) and, with
``clips.sightings``, one per camera for faces not on the watchlist. A clip starts with
the buffered pre-roll, is encoded as frames come, and is stored beside the snapshots
(``store/media.py``) once the frames' capture time passes its post-roll. Frames are
drawn as a viewer sees them; with ``web.privacy_blur`` faces not on the watchlist are
blurred.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sauron.config import ClipsConfig
from sauron.imaging import ImageDecodeError
from sauron.queues import LatestQueue, QueueClosed
from sauron.store.db import NewClip, Store
from sauron.store.snapshots import annotated_image
from sauron.types import Result

log = logging.getLogger(__name__)

#: H.264 encoders in the order tried; PyAV's wheels on PyPI carry libx264.
H264_ENCODERS = ("libx264", "libopenh264", "h264")
_TIME_BASE = Fraction(1, 1000)  # milliseconds of capture time


def h264_encoder() -> str | None:
    """The name of an H.264 encoder this PyAV has, or None."""
    import av

    for name in H264_ENCODERS:
        if name in av.codec.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except Exception:  # listed, but not an encoder here
                continue
            return name
    return None


def frame_at(path: Path, offset_s: float) -> np.ndarray | None:
    """The frame of a clip nearest ``offset_s`` seconds after its first (BGR), as it was
    drawn for the clip (boxes and names; blurred faces stay blurred); None for a clip
    that holds no frame. Decodes from the start: clips are short."""
    import av

    best: tuple[float, np.ndarray] | None = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.pts is None or frame.time_base is None:
                continue
            gap = abs(float(frame.pts * frame.time_base) - offset_s)
            if best is None or gap < best[0]:
                best = (gap, frame.to_ndarray(format="bgr24"))
            elif float(frame.pts * frame.time_base) > offset_s:
                break  # past it and getting farther
    return None if best is None else best[1]


class Mp4Writer:
    """One H.264 MP4 written frame by frame, its times the frames' capture times."""

    def __init__(self, path: Path, encoder: str) -> None:
        import av

        # Created private before the muxer opens it (it keeps the mode of a file it finds).
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        self.path = path
        self.encoder = encoder
        self._container: Any = av.open(
            str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        self._stream: Any = None
        self._t0 = 0.0
        self._last_pts = -1
        self.frames = 0

    def add(self, ts: float, bgr: np.ndarray) -> None:
        import av

        if self._stream is None:
            h, w = bgr.shape[0] // 2 * 2, bgr.shape[1] // 2 * 2  # 4:2:0 wants even sides
            stream = self._container.add_stream(self.encoder, rate=25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.time_base = _TIME_BASE
            if self.encoder == "libx264":
                stream.options = {"preset": "veryfast", "crf": "28"}
            self._stream, self._t0 = stream, ts
        w, h = self._stream.width, self._stream.height
        pts = round((ts - self._t0) * 1000)
        if pts <= self._last_pts:  # a frame out of order or twice: the clip moves on
            return
        if bgr.shape[:2] != (h, w):
            bgr = (
                bgr[:h, :w]
                if bgr.shape[0] - h in (0, 1) and bgr.shape[1] - w in (0, 1)
                else cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = pts, _TIME_BASE
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> int:
        """Finish the file; returns its size in bytes."""
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        return self.path.stat().st_size


@dataclass
class FrameRing:
    """A camera's recent frames, at most ``seconds`` of capture time and ``max_bytes``."""

    seconds: float
    max_bytes: int
    frames: deque[Result] = field(default_factory=deque)
    size: int = 0

    def add(self, result: Result) -> None:
        self.frames.append(result)
        self.size += len(result.frame.jpeg) + len(result.annotated_jpeg)
        newest = result.frame.captured_at
        while self.frames and (
            self.size > self.max_bytes or newest - self.frames[0].frame.captured_at > self.seconds
        ):
            old = self.frames.popleft()
            self.size -= len(old.frame.jpeg) + len(old.annotated_jpeg)

    def since(self, ts: float) -> list[Result]:
        return [r for r in self.frames if r.frame.captured_at >= ts]


@dataclass
class OpenClip:
    """A clip being written: the appearance's key (camera, person or None), its first
    frame's time, when its appearance was last seen, and the frames after that not yet
    written (they belong to the clip only if the appearance goes on or within post-roll)."""

    camera: str
    person: str | None
    writer: Mp4Writer | None
    rel: str
    started_at: float
    first_ts: float
    last_seen: float
    tail: list[Result] = field(default_factory=list)
    cut: bool = False  # reached clips.max_s: stored; the appearance goes on, the clip not
    last_written: float = 0.0


@dataclass
class ClipStats:
    frames: int = 0
    dropped: int = 0
    clips: int = 0
    errors: int = 0


class ClipRecorder:
    """Feed it every processed frame (:meth:`add`); it stores a clip per appearance."""

    def __init__(
        self,
        store: Store,
        cfg: ClipsConfig,
        *,
        gap_s: float,
        privacy_blur: bool = False,
        queue_size: int = 256,
        encoder: str | None = None,
    ) -> None:
        self.store, self.cfg, self.gap_s = store, cfg, gap_s
        self.privacy_blur = privacy_blur
        self.encoder = encoder or h264_encoder()
        if self.encoder is None:
            log.error(
                "clips: this PyAV has no H.264 encoder (tried %s); no clips will be kept. "
                "Install PyAV's wheel from PyPI (it carries libx264) or set clips.enabled=false",
                ", ".join(H264_ENCODERS),
            )
        self.stats = ClipStats()
        self._rings: dict[str, FrameRing] = {}
        self._open: dict[tuple[str, str | None], OpenClip] = {}
        self._queue: LatestQueue[Result] = LatestQueue(queue_size)
        self._thread = threading.Thread(target=self._run, name="clips", daemon=True)
        self._idle = threading.Condition()
        self._busy = 0

    @property
    def enabled(self) -> bool:
        return self.encoder is not None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> ClipRecorder:
        if self.enabled:
            self._thread.start()
            log.info(
                "clips: %s, %.0f s before and %.0f s after each appearance",
                self.encoder,
                self.cfg.pre_roll_s,
                self.cfg.post_roll_s,
            )
        return self

    def restart(self) -> None:
        if self.enabled and not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="clips", daemon=True)
            self._thread.start()

    def add(self, result: Result) -> None:
        """Queue a frame (cheap: on the caller's thread); a full queue drops its oldest."""
        if not self.enabled:
            return
        with self._idle:
            self._busy += 1
        dropped = self._queue.put(result)
        if dropped:
            self.stats.dropped += len(dropped)
            self._done(len(dropped))
            if self.stats.dropped % 100 == 1:
                log.warning(
                    "clips: the encoder is behind; dropped the oldest queued frame "
                    "(%d dropped so far): clips miss frames",
                    self.stats.dropped,
                )

    def _done(self, n: int) -> None:
        with self._idle:
            self._busy -= n
            self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued frame is handled (clips still open stay open)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy <= 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Handle what is queued, then finish and store every open clip."""
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._queue.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                result = self._queue.get()
            except QueueClosed:
                break
            try:
                self._frame(result)
            except Exception:
                self.stats.errors += 1
                log.exception("clips: camera %s frame not handled", result.frame.camera)
            finally:
                self._done(1)
        for clip in list(self._open.values()):
            self._finish(clip, clip.last_seen + self.cfg.post_roll_s)

    # --- on the clip thread ---------------------------------------------------------------

    def _frame(self, result: Result) -> None:
        self.stats.frames += 1
        camera, ts = result.frame.camera, result.frame.captured_at
        ring = self._rings.get(camera)
        if ring is None:
            ring = self._rings[camera] = FrameRing(
                self.cfg.pre_roll_s + 1.0, int(self.cfg.buffer_mb * 1e6)
            )
        ring.add(result)
        det = result.detections
        present: set[str | None] = set()
        if det.label == "face":
            present = {n for n in det.names if n is not None}
            if self.cfg.sightings and any(n is None for n in det.names):
                present.add(None)
        for key in [k for k in self._open if k[0] == camera]:
            self._advance(self._open[key], result, key[1] in present)
        for person in present:
            if (camera, person) not in self._open:
                self._begin(camera, person, ts, ring)

    def _begin(self, camera: str, person: str | None, ts: float, ring: FrameRing) -> None:
        assert self.encoder is not None
        frames = ring.since(ts - self.cfg.pre_roll_s)
        start = frames[0].frame.captured_at if frames else ts
        rel = self.store.media.new_path("clips", camera, start, ".mp4")
        try:
            writer: Mp4Writer | None = Mp4Writer(self.store.media.resolve(rel), self.encoder)
        except Exception:
            self.stats.errors += 1
            log.exception("clips: cannot create a clip of camera %s", camera)
            writer = None
        clip = OpenClip(camera, person, writer, rel, start, ts, ts, cut=writer is None)
        self._open[(camera, person)] = clip
        for r in frames:
            self._write(clip, r)

    def _advance(self, clip: OpenClip, result: Result, seen: bool) -> None:
        ts = result.frame.captured_at
        if seen and ts - clip.last_seen <= self.gap_s:  # the appearance goes on
            clip.last_seen = max(clip.last_seen, ts)
            for r in clip.tail:
                self._write(clip, r)
            clip.tail.clear()
            self._write(clip, result)
            return
        end = clip.last_seen + self.cfg.post_roll_s
        if seen:  # back after a gap: a new appearance, a new clip
            self._finish(clip, end)
            self._begin(clip.camera, clip.person, ts, self._rings[clip.camera])
            return
        if ts <= end:
            clip.tail.append(result)
        if ts - clip.last_seen > max(self.gap_s, self.cfg.post_roll_s):
            self._finish(clip, end)

    def _write(self, clip: OpenClip, result: Result) -> None:
        if clip.cut or clip.writer is None:
            return
        ts = result.frame.captured_at
        if ts - clip.started_at > self.cfg.max_s:
            log.info(
                "clips: camera %s: the clip of %s reached %.0f s and is stored now",
                clip.camera,
                clip.person or "unknown faces",
                self.cfg.max_s,
            )
            self._store(clip, clip.last_written)
            clip.cut = True  # the appearance goes on; its next frames start no clip
            return
        try:
            bgr = annotated_image(result, privacy_blur=self.privacy_blur)
        except ImageDecodeError as exc:
            log.warning("clips: camera %s frame %d: %s", clip.camera, result.frame.number, exc)
            return
        clip.writer.add(ts, bgr)
        clip.last_written = ts

    def _finish(self, clip: OpenClip, end: float) -> None:
        """The appearance ended: write the post-roll, store the clip, forget it."""
        del self._open[(clip.camera, clip.person)]
        for r in clip.tail:
            if r.frame.captured_at <= end:
                self._write(clip, r)
        self._store(clip, min(end, clip.last_seen + self.cfg.post_roll_s))

    def _store(self, clip: OpenClip, ended: float) -> None:
        writer, clip.writer = clip.writer, None
        if writer is None:
            return
        try:
            size = writer.close()
            if writer.frames == 0:
                self.store.media.delete([clip.rel])
                return
            kind = "sighting" if clip.person is None else "alert"
            self.store.add_clip(
                NewClip(clip.camera, kind, clip.person, clip.started_at, ended, clip.rel, size)
            )
        except Exception:
            self.stats.errors += 1
            self.store.media.delete([clip.rel])
            log.exception("clips: the clip of camera %s was not stored", clip.camera)
            return
        self.stats.clips += 1
        log.info(
            "clips: camera %s: %s, %d frames, %.1f s, %d KB",
            clip.camera,
            clip.person or "unknown faces",
            writer.frames,
            ended - clip.started_at,
            size // 1024,
        )
