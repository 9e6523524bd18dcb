"""Hostile input never kills a worker: each bad message lands in the dead-letter topic.

A real detect worker and a real match worker (real models, real broker) run in threads
while raw messages are written straight into their input topics: corrupt, truncated and
zero-sized JPEGs, a decompression bomb, unknown message versions and kinds, oversized
frames, garbage from a "camera". Each must come out in the dead-letter topic with its
reason, be counted in the metrics, and good frames sent after them must still come out.
Then the command line: an unreachable broker, an unreadable camera and an enrollment
photo without a face each end the command with a clear error, never a hang.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from sauron import codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import wait_until
from sauron.bus.topics import Topics
from sauron.bus.worker import StageWorker
from sauron.config import Settings, load_settings
from sauron.detect.frame_checks import MAX_JPEG_BYTES
from sauron.detect.kafka_worker import build_detect_worker
from sauron.match.kafka_worker import build_match_worker, topic_namer
from sauron.metrics import Metrics
from sauron.types import Detections, Frame

pytestmark = pytest.mark.timeout(240)


def kafka_settings(bootstrap: str, prefix: str, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {
        "bus": {"type": "kafka", "bootstrap_servers": bootstrap, "connect_timeout_s": 15},
        "topics": {"prefix": prefix, "partitions": 2},
        "detect": {"tracking": False, "batch_size": 4},
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_settings(None, overrides)


def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[Any]], bool], timeout: float = 60
) -> list[Any]:
    """Every message of ``topic`` from its start, until ``done(messages)`` or the timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(got):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg)
        return got
    finally:
        consumer.close()


def good_jpeg(photo: Path, width: int = 320) -> bytes:
    bgr = cv2.imread(str(photo))
    h = round(bgr.shape[0] * width / bgr.shape[1])
    ok, buf = cv2.imencode(".jpg", cv2.resize(bgr, (width, h)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def with_dimensions(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header claiming another size (no pixel changes)."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]


def frame_message(camera: str, number: int, jpeg: bytes, ts: float | None = None) -> bytes:
    return codec.encode_frame(Frame(camera, number, time.time() if ts is None else ts, jpeg))


FRAME_CASES = [
    "corrupt-jpeg",
    "damaged-header",
    "truncated-jpeg",
    "zero-sized-frame",
    "zero-dimensions",
    "pixel-bomb",
    "oversized-frame",
    "not-a-jpeg",
    "unknown-version",
    "unknown-kind",
    "camera-garbage",
    "empty-message",
    "bad-camera-id",
    "not-finite-time",
    "detections-in-frames",
]


def bad_frame_cases(jpeg: bytes) -> dict[str, tuple[bytes | None, str]]:
    """Case name -> (message value, a phrase the dead-letter reason must contain)."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    versioned = bytearray(frame_message("cam", 1, jpeg))
    versioned[3] = 99
    kind = bytearray(frame_message("cam", 1, jpeg))
    kind[4] = 77
    damaged = bytearray(jpeg)
    damaged[2:6] = b"\x00\x00\x00\x00"  # the first marker after SOI is gone
    ok, png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
    assert ok
    big = b"\xff\xd8" + rng.integers(0, 256, MAX_JPEG_BYTES + 1000, dtype=np.uint8).tobytes()
    return {
        "corrupt-jpeg": (frame_message("cam", 1, b"\xff\xd8" + noise + b"\xff\xd9"), "JPEG"),
        "damaged-header": (frame_message("cam", 2, bytes(damaged)), "corrupt JPEG"),
        "truncated-jpeg": (frame_message("cam", 3, jpeg[: len(jpeg) // 2]), "truncated JPEG"),
        "zero-sized-frame": (frame_message("cam", 4, b""), "zero-sized frame"),
        "zero-dimensions": (frame_message("cam", 5, with_dimensions(jpeg, 0, 0)), "zero-sized"),
        "pixel-bomb": (
            frame_message("cam", 6, with_dimensions(jpeg, 30000, 30000)),
            "pixels is over the limit",
        ),
        "oversized-frame": (frame_message("cam", 7, big), "over the limit of"),
        "not-a-jpeg": (frame_message("cam", 8, png.tobytes()), "not a JPEG"),
        "unknown-version": (bytes(versioned), "unsupported message version 99"),
        "unknown-kind": (bytes(kind), "unknown message kind 77"),
        "camera-garbage": (noise, "not a Sauron message"),
        "empty-message": (None, "message too short"),
        "bad-camera-id": (frame_message("../../etc/passwd", 9, jpeg), "camera name"),
        "not-finite-time": (frame_message("cam", 10, jpeg, ts=float("nan")), "finite"),
        "detections-in-frames": (
            codec.encode_detections(Frame("cam", 11, time.time(), jpeg), Detections.empty(), {}),
            "expected a FRAME message",
        ),
    }


@dataclass
class Running:
    settings: Settings
    worker: StageWorker
    thread: threading.Thread
    metrics: Metrics


def start_worker(worker: StageWorker, settings: Settings, metrics: Metrics) -> Running:
    thread = threading.Thread(target=worker.run, name=f"test-{worker.name}", daemon=True)
    thread.start()
    return Running(settings, worker, thread, metrics)


def stop_worker(run: Running) -> None:
    run.worker.stop_event.set()
    run.thread.join(60)
    assert not run.thread.is_alive(), f"{run.worker.name} worker did not stop"


@dataclass
class DetectRun:
    running: Running
    topics: Topics
    cases: dict[str, tuple[bytes | None, str]]
    dead: dict[str, Any]
    detections: list[Any]


@pytest.fixture(scope="module")
def detect_run(kafka_bootstrap: str, photos: dict[str, Path]) -> Iterator[DetectRun]:
    """A detect worker fed every bad case, then good frames; what came out."""
    settings = kafka_settings(kafka_bootstrap, f"bad{uuid.uuid4().hex[:8]}")
    topics = Topics.from_config(settings.topics)
    ensure_topics(settings)
    metrics = Metrics()
    run = start_worker(
        build_detect_worker(settings, namer=topic_namer, metrics=metrics), settings, metrics
    )
    jpeg = good_jpeg(photos["obama.jpg"])
    cases = bad_frame_cases(jpeg)
    assert list(cases) == FRAME_CASES
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 10 << 20})
    for name, (value, _) in cases.items():
        producer.produce(topics.frames, value=value, key=name, partition=0)
    for n in range(3):  # good frames after the bad ones, on both partitions
        producer.produce(topics.frames, value=frame_message("good", n, jpeg), partition=n % 2)
    assert producer.flush(30) == 0
    try:
        dead = read_topic(kafka_bootstrap, topics.deadletter, lambda m: len(m) >= len(cases))
        # the worker names the faces too (match.in_detect): results on the annotated topic
        dets = read_topic(kafka_bootstrap, topics.annotated, lambda m: len(m) >= 3)
        yield DetectRun(run, topics, cases, {m.key().decode(): m for m in dead}, dets)
    finally:
        stop_worker(run)


@pytest.mark.kafka
@pytest.mark.parametrize("case", FRAME_CASES)
def test_bad_frame_goes_to_dead_letters_with_reason(detect_run: DetectRun, case: str) -> None:
    value, phrase = detect_run.cases[case]
    assert case in detect_run.dead, f"{case}: no dead letter (got {sorted(detect_run.dead)})"
    msg = detect_run.dead[case]
    headers = {k: v.decode() for k, v in msg.headers() or []}
    assert phrase in headers["reason"], headers["reason"]
    assert headers["stage"] == "detect"
    assert headers["topic"] == detect_run.topics.frames
    assert int(headers["offset"]) >= 0
    if value is not None and len(value) <= 1 << 20:
        assert msg.value() == value, "the dead letter keeps the original message"


@pytest.mark.kafka
def test_detect_worker_carries_on_and_counts(detect_run: DetectRun) -> None:
    frames = sorted(codec.decode_result(m.value()).frame.number for m in detect_run.detections)
    assert frames == [0, 1, 2], "good frames after the bad ones must still come out"
    assert len(detect_run.dead) == len(detect_run.cases), "one dead letter per bad input"
    run = detect_run.running
    assert run.thread.is_alive(), "the worker died"
    ok, body = run.metrics.health.report()
    assert ok, body
    total = sum(
        run.metrics.value("sauron_dead_letters_total", stage="detect", reason=r)
        for r in ("FrameRejected", "CodecError")
    )
    assert total == len(detect_run.cases)
    # Outputs are counted when the worker serves its delivery reports, a moment after
    # they became readable.
    assert wait_until(
        lambda: run.metrics.value("sauron_frames_out_total", stage="detect") == 3, 10
    ), run.worker.stats
    assert run.metrics.value("sauron_frames_in_total", stage="detect") == len(detect_run.cases) + 3


@pytest.mark.kafka
def test_match_worker_dead_letters_bad_detections(
    kafka_bootstrap: str, topic_prefix: str, photos: dict[str, Path]
) -> None:
    settings = kafka_settings(kafka_bootstrap, topic_prefix, match={"in_detect": False})
    topics = Topics.from_config(settings.topics)
    ensure_topics(settings)
    metrics = Metrics()
    worker, tail = build_match_worker(settings, metrics=metrics)
    run = start_worker(worker, settings, metrics)
    jpeg = good_jpeg(photos["obama.jpg"])
    good = codec.encode_detections(Frame("good", 0, time.time(), jpeg), Detections.empty(128), {})
    bomb = Frame("cam", 1, time.time(), with_dimensions(jpeg, 30000, 30000))
    cases = {
        "truncated-detections": (good[: len(good) - 10], "truncated"),
        "frame-in-detections": (frame_message("cam", 2, jpeg), "expected a DETECTIONS message"),
        "bomb-in-detections": (
            codec.encode_detections(bomb, Detections.empty(128), {}),
            "pixels is over the limit",
        ),
        "garbage": (os.urandom(300), "Sauron message"),
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for name, (value, _) in cases.items():
        producer.produce(topics.detections, value=value, key=name, partition=1)
    producer.produce(topics.detections, value=good, key="good", partition=1)
    assert producer.flush(30) == 0
    try:
        dead = read_topic(kafka_bootstrap, topics.deadletter, lambda m: len(m) >= len(cases))
        out = read_topic(kafka_bootstrap, topics.annotated, lambda m: len(m) >= 1)
    finally:
        stop_worker(run)
        tail.stop()
    reasons = {m.key().decode(): dict(m.headers())["reason"].decode() for m in dead}
    for name, (_, phrase) in cases.items():
        assert phrase in reasons.get(name, ""), f"{name}: {reasons.get(name)}"
    assert [codec.decode_result(m.value()).frame.camera for m in out] == ["good"]
    assert metrics.value("sauron_frames_out_total", stage="match") == 1


# ---------------------------------------------------------------------------- command line


def sauron(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sauron.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return proc, time.monotonic() - t0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "detect"],
        ["worker", "match"],
        ["status"],
        ["ingest", "--camera", "x=/nonexistent"],
        ["run", "--camera", "x=/nonexistent", "--until-done", "--processes", "1"],
    ],
    ids=["worker-detect", "worker-match", "status", "ingest", "run"],
)
def test_unreachable_broker_gives_clear_error_not_a_hang(command: list[str]) -> None:
    port = closed_port()
    proc, took = sauron(
        *command,
        "--bootstrap",
        f"127.0.0.1:{port}",
        env={"SAURON_BUS__CONNECT_TIMEOUT_S": "3", "SAURON_MATCH__IN_DETECT": "false"},
        timeout=90,
    )
    assert proc.returncode != 0
    assert f"cannot reach Kafka at 127.0.0.1:{port} within 3 s" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert took < 60, f"took {took:.0f} s to give up"


def test_match_worker_refuses_while_detect_workers_match() -> None:
    """With the default ``match.in_detect`` a match worker would wait forever on a topic
    nobody writes: it says so and how to change it, before touching the broker."""
    proc, _ = sauron("worker", "match", "--bootstrap", f"127.0.0.1:{closed_port()}", timeout=60)
    assert proc.returncode != 0
    assert "match.in_detect is on" in proc.stderr, proc.stderr[-2000:]
    assert "SAURON_MATCH__IN_DETECT=false" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bus", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_unreadable_camera_exits_nonzero_naming_it(
    bus: str, request: pytest.FixtureRequest
) -> None:
    bus_args: list[str] = []
    if bus == "kafka":
        bus_args = [
            "--bootstrap",
            request.getfixturevalue("kafka_bootstrap"),
            "--topic-prefix",
            request.getfixturevalue("topic_prefix"),
        ]
    proc, took = sauron(
        "run", "--camera", "x=/nonexistent", "--until-done", "--processes", "1", *bus_args
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "camera x" in proc.stderr
    assert "/nonexistent" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert took < 100


def test_enroll_photo_without_a_face_exits_nonzero(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (0, 0), 6)
    photo = tmp_path / "landscape.jpg"
    assert cv2.imwrite(str(photo), scene)
    watchlist = tmp_path / "watchlist"
    proc, _ = sauron("enroll", "alice", str(photo), "--watchlist", str(watchlist), timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "no face found" in proc.stderr
    assert str(photo) in proc.stderr
    assert not (watchlist / "alice").exists(), "nothing may be enrolled from a faceless photo"
