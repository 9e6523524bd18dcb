"""The detect stage on Kafka: frames in, detections (or, with a matcher, named faces) out.

The worker processes of ``sauron worker detect`` are started from ``sauron.match.worker``:
with ``match.in_detect`` (the default) a detect worker names the faces too, so what builds
one stands above both stages.

Every frame is checked before any pixel is decoded (see :func:`check_frame`): a frame that
is empty, not a JPEG, truncated, too large in bytes or in pixels, or from a camera id that
is not a valid name is refused with a :class:`FrameRejected` and lands in the dead-letter
topic with that reason. With ``detect.max_frame_age_s`` set, frames older than that are
dropped and counted instead of detected, so a worker that fell behind catches up; frames
of live cameras are dropped so once older than ``detect.live_frame_age_s`` (by default),
before they are decoded (:class:`sauron.bus.worker.StageWorker`).

A worker is ready before it joins the group: its models are loaded and have run once on
a dummy frame (:func:`warm_up`), so the first real frame pays no start-up cost.
"""

from __future__ import annotations

import contextlib
import logging
import math
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
from sauron.metrics import Metrics
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


def detect_stage_worker(
    settings: Settings,
    stage: DetectStage,
    partitions: int,
    *,
    group: str | None = None,
    metrics: Metrics | None = None,
    matcher: Matcher | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> StageWorker:
    """The detect stage on the frames topic (``partitions``: the detections topic's); with
    a ``matcher`` it names the faces too (``sauron.match.worker.build_detect_worker``)."""
    topics = Topics.from_config(settings.topics)

    def stale(msg: Any) -> None:  # a live frame the worker dropped unread for its age
        if on_stale is not None:
            with contextlib.suppress(codec.CodecError):
                on_stale(codec.decode_frame(msg.value() or b""))

    return StageWorker(
        settings,
        topic=topics.frames,
        name="detect",
        group=group or settings.topics.name("detect"),
        handler=detect_handler(settings, stage, partitions, matcher, on_stale),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
        live_max_age_s=settings.detect.live_frame_age_s,
        on_stale=stale,
    )
