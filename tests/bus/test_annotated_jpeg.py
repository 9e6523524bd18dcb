"""``bus.annotated_jpeg`` over a real broker: by default an annotated result carries the
frame's JPEG, so any reader of the annotated topic (a `sauron web` or `sauron worker record`
elsewhere) gets the pixels; off, the JPEG crosses the broker once (in the frames topic),
the annotated topic holds results without it, and `sauron run` puts it back for its own
viewers from the frames it published."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from sauron import codec
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics
from sauron.config import Settings, load_settings
from sauron.demo.synth import demo_clips
from sauron.pipeline import PublishedJpegs, RunOptions, run
from sauron.types import Detections, Frame, Result

pytestmark = pytest.mark.kafka

FRAMES = 12


def _read_topic(settings: Settings, topic: str) -> list[bytes]:
    """Every message of a topic, from its beginning to where it ends now."""
    got: list[bytes] = []
    lock = threading.Lock()

    def add(msg: Any) -> None:
        with lock:
            got.append(msg.value())

    tail = TopicTail(settings.bus, topic, add)
    tail.start()
    try:
        assert tail.caught_up.wait(30), f"could not read {topic}"
    finally:
        tail.stop()
        tail.join(15)
    return got


def _run(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, **bus: Any
) -> tuple[Settings, list[Result]]:
    clips = demo_clips(tmp_path / "clips", frames=FRAMES, fps=10)
    settings = load_settings(
        None,
        {
            "cameras": [
                {"name": c.camera, "source": str(c.path), "realtime": False} for c in clips
            ],
            "bus": {"type": "kafka", "bootstrap_servers": kafka_bootstrap, **bus},
            "topics": {"prefix": topic_prefix, "partitions": 2},
        },
    )
    seen: list[Result] = []
    summary = run(
        settings,
        RunOptions(
            processes=1,
            until_done=True,
            results=tmp_path / "results.jsonl",
            timeout_s=150,
            on_result=[seen.append],
        ),
    )
    assert sum(summary.frames_out.values()) == FRAMES * len(clips)
    return settings, seen


def _published(settings: Settings) -> dict[tuple[str, int], bytes]:
    frames = (codec.decode_frame(v) for v in _read_topic(settings, _topics(settings).frames))
    return {(f.camera, f.number): f.jpeg for f in frames}


def _topics(settings: Settings) -> Topics:
    return Topics.from_config(settings.topics)


@pytest.mark.timeout(240)
def test_annotated_results_carry_the_jpeg_by_default(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings, seen = _run(kafka_bootstrap, topic_prefix, tmp_path)
    assert settings.bus.annotated_jpeg
    published = _published(settings)
    stored = [codec.decode_result(v) for v in _read_topic(settings, _topics(settings).annotated)]
    assert len(stored) == len(published) == 2 * FRAMES
    # what a reader on another machine gets: the frame's pixels, as published
    for r in stored:
        assert r.frame.jpeg == published[(r.frame.camera, r.frame.number)]
    assert len(seen) == len(published)
    for r in seen:
        assert r.frame.jpeg == published[(r.frame.camera, r.frame.number)]


@pytest.mark.timeout(240)
def test_without_annotated_jpeg_the_frame_crosses_once_and_run_restores_it(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings, seen = _run(kafka_bootstrap, topic_prefix, tmp_path, annotated_jpeg=False)
    published = _published(settings)
    raw = _read_topic(settings, _topics(settings).annotated)
    stored = [codec.decode_result(v) for v in raw]
    assert len(stored) == len(published) == 2 * FRAMES
    for r, value in zip(stored, raw, strict=True):
        assert r.frame.jpeg == b""  # left out of the annotated topic
        assert len(value) < len(published[(r.frame.camera, r.frame.number)])
    # `sauron run`'s own viewers get the pixels back, every one, and the rest as stored
    assert len(seen) == len(published)
    records = {(r.frame.camera, r.frame.number): r.to_json() for r in stored}
    assert any(rec["faces"] for rec in records.values())  # faces were found and kept
    for r in seen:
        assert r.frame.jpeg == published[(r.frame.camera, r.frame.number)]
        assert r.to_json() == records[(r.frame.camera, r.frame.number)]


def test_published_jpegs_are_bounded_and_taken_once() -> None:
    held = PublishedJpegs(per_camera=2)
    for n in range(3):
        held.keep(Frame("door", n, 1.0, bytes([n + 1])))
    result = Result(Frame("door", 2, 1.0, b""), Detections.empty(), 2.0)
    back = held.restore(result)
    assert back is not None and back.frame.jpeg == b"\x03"
    assert held.restore(result) is None  # taken once
    assert held.take("door", 0) is None  # the oldest went past the bound
    assert held.take("door", 1) == b"\x02"
    full = Result(Frame("door", 5, 1.0, b"\xff"), Detections.empty(), 2.0)
    assert held.restore(full) is full  # a result with its JPEG is left as it is
