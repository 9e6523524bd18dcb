"""``sauron worker detect``: the detect stage as a Kafka consumer-group member.

Every frame is checked before any pixel is decoded (see :func:`check_frame`): a frame that
is empty, not a JPEG, truncated, too large in bytes or in pixels, or from a camera id that
is not a valid name is refused with a :class:`FrameRejected` and lands in the dead-letter
topic with that reason. With ``detect.max_frame_age_s`` set, frames older than that are
dropped and counted instead of detected, so a worker that fell behind catches up.

A worker is ready before it joins the group: its models are loaded and have run once on
a dummy frame (:func:`warm_up`), so the first real frame pays no start-up cost.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import dlib
import numpy as np

from sauron import SauronError, codec
from sauron.bus.client import MAX_MESSAGE_BYTES
from sauron.bus.topics import Topics, frame_partition
from sauron.bus.worker import Output, Skip, StageWorker
from sauron.config import Settings, check_name
from sauron.detect.models import FaceModel
from sauron.detect.stage import DetectStage
from sauron.metrics import Metrics, serve
from sauron.types import Detections, Frame

Matcher = Callable[[Frame, Detections, dict[str, float]], list[Output]]

log = logging.getLogger(__name__)

# The annotated message carries the frame twice (original and drawn): leave room for both.
MAX_JPEG_BYTES = MAX_MESSAGE_BYTES // 3
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}


class FrameRejected(SauronError):
    """A frame is refused before decoding; the message is the dead-letter reason."""


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) read from a JPEG's frame header, without decoding any pixel."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise FrameRejected(f"not a JPEG: starts with {data[:4].hex() or 'nothing'}")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise FrameRejected(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        seg = int.from_bytes(data[i + 2 : i + 4], "big")
        if seg < 2:
            raise FrameRejected(f"corrupt JPEG: segment length {seg} at byte {i}")
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + seg
    raise FrameRejected("corrupt JPEG: no frame header before the image data")


def check_frame(frame: Frame, max_pixels: int) -> None:
    """Refuse, with the reason, a frame that must not reach the image decoder."""
    try:
        check_name(frame.camera, "camera id")
    except ValueError as exc:
        raise FrameRejected(str(exc)[:200]) from None
    if not math.isfinite(frame.captured_at):
        raise FrameRejected(f"capture time {frame.captured_at} is not a finite number")
    size = len(frame.jpeg)
    if size == 0:
        raise FrameRejected("zero-sized frame: the JPEG is empty")
    if size > MAX_JPEG_BYTES:
        raise FrameRejected(f"frame of {size} bytes is over the limit of {MAX_JPEG_BYTES}")
    width, height = jpeg_dimensions(frame.jpeg)
    if width == 0 or height == 0:
        raise FrameRejected(f"zero-sized frame: the JPEG header says {width}x{height}")
    if width * height > max_pixels:
        raise FrameRejected(
            f"frame of {width}x{height} pixels is over the limit of {max_pixels} pixels"
        )
    if not frame.jpeg.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise FrameRejected(f"truncated JPEG: {size} bytes without an end-of-image marker")


def detect_handler(
    settings: Settings,
    stage: DetectStage,
    partitions: int,
    matcher: Matcher | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> Any:
    """Frames in, detections out; with a ``matcher`` (``match.in_detect``), named faces
    out: the annotated result and the sightings, as a match worker would write them.
    ``on_stale`` is told of every frame dropped for its age (``sauron run`` counts them
    per camera)."""
    topics = Topics.from_config(settings.topics)
    mode = settings.topics.partitioning
    max_age = settings.detect.max_frame_age_s
    max_pixels = settings.detect.max_frame_pixels

    def handle(value: bytes) -> list[Output]:
        frame = codec.decode_frame(value)
        check_frame(frame, max_pixels)
        if max_age is not None and time.time() - frame.captured_at > max_age:
            if on_stale is not None:
                on_stale(frame)
            raise Skip("stale", f"frame older than {max_age} s")
        det, timings = stage.process(frame)
        if matcher is not None:
            return matcher(frame, det, timings)
        return [
            Output(
                topics.detections,
                codec.encode_detections(frame, det, timings),
                key=frame.camera,
                partition=frame_partition(frame.camera, frame.number, partitions, mode),
                captured_at=frame.captured_at,
            )
        ]

    return handle


def tracking_enabled(settings: Settings) -> bool:
    return settings.detect.tracking and settings.topics.partitioning == "camera"


def warm_up(stage: DetectStage) -> float:
    """Run the stage's models once on a dummy frame (loading is lazy in places and a
    first inference is slow); the seconds it took. The stage's tracking state is not
    touched."""
    t0 = time.perf_counter()
    rgb = np.full((360, 640, 3), 127, np.uint8)
    detector = stage.detector
    if isinstance(detector, FaceModel):
        detector.locate(rgb)
        # a made-up face: eye corners and nose tip in dlib's 5-point order
        pts = [(350, 160), (330, 160), (290, 160), (310, 160), (320, 200)]
        shape = dlib.full_object_detection(
            dlib.rectangle(270, 110, 370, 230), [dlib.point(x, y) for x, y in pts]
        )
        detector.embed(rgb, [shape])
    else:
        detector.detect(rgb)
    return time.perf_counter() - t0


def build_detect_worker(
    settings: Settings,
    *,
    group: str | None = None,
    metrics: Metrics | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> StageWorker:
    from sauron.bus.admin import ensure_topics

    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    stage = DetectStage(settings.detect, tracking=tracking_enabled(settings))
    log.info("detect: models loaded and warmed in %.2f s", warm_up(stage))
    matcher: Matcher | None = None
    if settings.match.in_detect:
        from functools import partial

        from sauron.match.stage import MatchStage
        from sauron.match.worker import match_outputs, watchlist_from_topic

        watchlist, tail = watchlist_from_topic(settings)
        match = MatchStage(settings.match, watchlist)
        matcher = partial(match_outputs, topics, match, counts[topics.annotated])
    worker = StageWorker(
        settings,
        topic=topics.frames,
        name="detect",
        group=group or settings.topics.name("detect"),
        handler=detect_handler(settings, stage, counts[topics.detections], matcher, on_stale),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
    )
    if matcher is not None:
        worker.on_stop.append(tail.stop)
    return worker


def run_detect_worker(
    settings: Settings,
    *,
    group: str | None = None,
    metrics_port: int | None = None,
    parent: int | None = None,
    signals: DetectSignals | None = None,
    index: int = 0,
) -> None:
    """One detect worker in this process until SIGTERM/SIGINT (or ``parent`` is gone).

    On the signal the current batch is finished (its outputs flushed, or its transaction
    committed), offsets are committed and the group is left, then the function returns.
    With ``signals`` (``sauron run``) the worker reports when it is ready (models warm,
    first assignment received) and every frame it drops as stale.
    """
    metrics = Metrics()
    port = settings.metrics.port if metrics_port is None else metrics_port
    server = serve(metrics, port, settings.metrics.host)
    worker = build_detect_worker(
        settings,
        group=group,
        metrics=metrics,
        on_stale=signals.report_stale if signals is not None else None,
    )
    if signals is not None:
        worker.on_ready.append(signals.ready[index].set)
    stop_on_signals(worker.stop_event)
    if parent is not None:
        _watch_parent(parent, worker.stop_event)
    try:
        worker.run()
    finally:
        if server is not None:
            server.stop()


def stop_on_signals(event: Any) -> None:
    """SIGTERM/SIGINT set ``event`` (the worker finishes its batch and leaves the group)."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch and leaving the group", signum)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _watch_parent(parent: int, event: threading.Event) -> None:
    """Stop cleanly once the process that spawned us is gone (killed without cleanup)."""

    def watch() -> None:
        while not event.wait(1.0):
            if os.getppid() != parent:
                log.warning("parent process %d is gone: stopping", parent)
                event.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class DetectSignals:
    """What spawned detect workers tell the process that started them: one ``ready``
    event each, and a queue of (camera, frame number) of the frames dropped as stale."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready = [ctx.Event() for _ in range(n)]
        self.stale: Any = ctx.Queue()

    def report_stale(self, frame: Frame) -> None:
        self.stale.put((frame.camera, frame.number))

    def wait_ready(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every worker; how many are ready."""
        deadline = time.monotonic() + timeout
        for ev in self.ready:
            ev.wait(max(0.0, deadline - time.monotonic()))
        return sum(ev.is_set() for ev in self.ready)

    def drain_stale(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        while True:
            try:
                out.append(self.stale.get_nowait())
            except queue.Empty:
                return out


def _process_main(
    settings_json: str,
    group: str | None,
    metrics_port: int | None,
    parent: int,
    signals: DetectSignals | None,
    index: int,
) -> None:
    from sauron.cli import setup_logging

    setup_logging()
    run_detect_worker(
        Settings.model_validate_json(settings_json),
        group=group,
        metrics_port=metrics_port,
        parent=parent,
        signals=signals,
        index=index,
    )


def spawn_detect_workers(
    settings: Settings,
    n: int,
    *,
    group: str | None = None,
    metrics_base: int = 0,
    signals: DetectSignals | None = None,
) -> list[Any]:
    """Start ``n`` detect worker processes (one core each); returns the processes.

    With ``metrics_base`` > 0, process i serves its metrics on port ``metrics_base + i``.
    ``signals`` (made for ``n`` workers) carries their readiness and stale drops back.
    """
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_process_main,
            args=(
                settings.model_dump_json(),
                group,
                metrics_base + i if metrics_base else 0,
                os.getpid(),
                signals,
                i,
            ),
            name=f"sauron-detect-{i}",
            daemon=True,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    return procs
