"""Staying live over a real broker: frames of live cameras that wait too long are dropped
as stale and counted, never detected late; frames of files read as fast as possible are
never dropped for their age."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import pytest

from sauron.bus.admin import ensure_topics
from sauron.bus.client import wait_until
from sauron.bus.producer import FrameProducer
from sauron.bus.topics import Topics
from sauron.config import load_settings
from sauron.detect.kafka_worker import build_detect_worker
from sauron.match.kafka_worker import topic_namer
from sauron.metrics import Metrics
from sauron.types import Frame

from .overload import check_stayed_live, overload

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def jpeg(photos: dict[str, Path]) -> bytes:
    bgr = cv2.resize(cv2.imread(str(photos["obama.jpg"])), (320, 240))
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


@pytest.mark.timeout(120)
def test_live_frames_past_the_age_limit_are_dropped_unread(
    kafka_bootstrap: str, topic_prefix: str, jpeg: bytes
) -> None:
    """A backlog of a live camera is skipped (counted as stale, its offsets committed),
    the fresh frames are detected, and a file camera's equally old frames are detected."""
    s = load_settings(
        None,
        {
            "bus": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "topics": {"prefix": topic_prefix, "partitions": 2},
            "detect": {"live_frame_age_s": 30.0},
        },
    )
    counts = ensure_topics(s)
    producer = FrameProducer(s, counts[Topics.from_config(s.topics).frames], live={"door"})
    now = time.time()
    for i in range(10):  # a live camera's backlog: 6 frames a minute old, 4 fresh
        producer.publish(Frame("door", i, now - 60 if i < 6 else now, jpeg))
    for i in range(3):  # a file read as fast as possible: old frames, not live
        producer.publish(Frame("archive", i, now - 60, jpeg))
    assert producer.flush(30) == 0
    stale: list[tuple[str, int]] = []
    metrics = Metrics()
    worker = build_detect_worker(
        s,
        namer=topic_namer,
        metrics=metrics,
        on_stale=lambda f: stale.append((f.camera, f.number)),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: worker.stats.dropped + worker.stats.processed >= 13, 90)
    finally:
        worker.stop_event.set()
        thread.join(30)
    assert sorted(stale) == [("door", i) for i in range(6)]
    assert worker.stats.dropped == 6 and worker.stats.processed == 7
    assert metrics.value("sauron_frames_dropped_total", stage="detect", reason="stale") == 6
    assert worker.stats.dead_letters == 0


@pytest.mark.timeout(240)
def test_an_overloaded_run_drops_stale_frames_instead_of_falling_behind(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Four live cameras at 20 frames/s each into one worker that scans every whole frame
    (a few times more than it can take): the worker drops the frames that waited past the
    limit and keeps up with the cameras; every published frame is either in the results
    file (in order, once) or counted as dropped, and frames of the second half of each
    camera's stream are among those detected."""
    got = overload(
        tmp_path,
        bus={"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        topics={"prefix": topic_prefix, "partitions": 4},
    )
    check_stayed_live(got)
    assert got.summary.dropped == got.summary.dropped_stale  # nothing else was dropped
