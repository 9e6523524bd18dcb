"""The Kafka transport's reliability pieces that need no broker: the bounded frame
producer against an unreachable broker, the metrics server, the frame checks, and the
worker path under fuzzed input. (Tests that need the real broker, e.g. offset tracking and
the stale-frame drop policy, are in tests/e2e/test_faults.py, next to its fixtures.)

The fuzz tests drive the real detect and match handlers (real models) with hypothesis for a
bounded number of examples: whatever the bytes, a handler either returns well-formed
outputs or raises an ``Exception`` (which the worker turns into a dead letter); it never
takes the process down or hangs. The codec alone is fuzzed in tests/test_codec.py.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sauron import codec
from sauron.bus.client import consume_ready
from sauron.bus.producer import FrameProducer
from sauron.bus.worker import Output
from sauron.config import Settings, load_settings
from sauron.detect.frame_checks import FrameRejected, check_frame, jpeg_dimensions
from sauron.detect.kafka_worker import detect_handler
from sauron.detect.stage import DetectStage
from sauron.match.kafka_worker import match_handler
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.metrics import Metrics, MetricsServer
from sauron.types import Detections, Frame

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def kafka_settings(bootstrap: str, prefix: str, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {
        "bus": {"type": "kafka", "bootstrap_servers": bootstrap, "connect_timeout_s": 10},
        "topics": {"prefix": prefix, "partitions": 2},
        "detect": {"tracking": False},
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_settings(None, overrides)


@pytest.fixture(scope="module")
def jpeg(photos: dict[str, Path]) -> bytes:
    bgr = cv2.imread(str(photos["obama.jpg"]))
    small = cv2.resize(bgr, (240, round(bgr.shape[0] * 240 / bgr.shape[1])))
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- frame producer


def test_frame_producer_buffer_is_bounded_then_drops_and_counts(jpeg: bytes) -> None:
    """Broker unreachable: frames are held up to the buffer bound, the rest are dropped
    (``buffer_full``), and held ones expire after the delivery timeout; all counted."""
    s = kafka_settings(
        f"127.0.0.1:{closed_port()}",
        "nobroker",
        bus={"producer_buffer_mb": 1, "delivery_timeout_s": 2},
    )
    metrics = Metrics()
    producer = FrameProducer(s, 2, metrics=metrics)
    big = jpeg + b"\0" * (60_000 - len(jpeg))  # ~60 kB frames: ~17 fit in 1 MiB
    t0 = time.monotonic()
    accepted = sum(producer.publish(Frame("cam", i, time.time(), big)) for i in range(100))
    assert time.monotonic() - t0 < 5, "a live camera's frames never wait for the broker"
    assert 5 <= accepted <= 20, f"{accepted} frames held: the bound is 1 MiB"
    assert producer.stats.dropped["buffer_full"] == 100 - accepted
    left = producer.flush(15)
    assert left == 0, "held frames expire after delivery_timeout_s"
    assert producer.stats.dropped["delivery_timeout"] == accepted
    assert producer.stats.acked == 0
    assert producer.stats.offered == producer.stats.acked + producer.stats.dropped_total
    assert metrics.value("sauron_frames_dropped_total", stage="ingest", reason="buffer_full") == (
        100 - accepted
    )


def test_frame_producer_drops_oversized_frames(jpeg: bytes) -> None:
    s = kafka_settings(f"127.0.0.1:{closed_port()}", "nobroker")
    producer = FrameProducer(s, 1)
    assert not producer.publish(Frame("cam", 0, time.time(), b"\xff" * (11 << 20)))
    assert producer.stats.dropped == {"too_large": 1}
    producer.flush(0)


# ---------------------------------------------------------------------------- metrics server


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class _Fetched:
    """Stands in for a consumer with ``queued`` messages already fetched."""

    def __init__(self, queued: int) -> None:
        self.queued = list(range(queued))
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[int]:
        self.calls.append((num_messages, timeout))
        out, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return out


@pytest.mark.parametrize(("queued", "most", "got"), [(0, 8, 0), (1, 8, 1), (5, 8, 5), (20, 8, 8)])
def test_consume_ready_waits_for_one_then_takes_what_is_there(
    queued: int, most: int, got: int
) -> None:
    consumer = _Fetched(queued)
    msgs = consume_ready(consumer, most, timeout=0.2)  # type: ignore[arg-type]
    assert msgs == list(range(got))
    # only the first call may wait; a lone message is never held for a full batch
    assert consumer.calls[0] == (1, 0.2)
    assert all(timeout == 0 for _, timeout in consumer.calls[1:])
    assert len(consumer.calls) == (2 if queued else 1)


def test_metrics_server_serves_metrics_and_health() -> None:
    metrics = Metrics()
    metrics.health.stall_s = 0.5
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        comp = metrics.health.component("detect")
        code, body = _get(f"{server.url}/healthz")
        assert code == 503 and json.loads(body)["components"]["detect"]["state"] == "starting"
        comp.beat(assigned=3)
        metrics.frames_in.labels("detect").inc(7)
        metrics.dead_letters.labels("detect", "CodecError").inc()
        metrics.latency.labels("detect").observe(0.2)
        code, body = _get(f"{server.url}/healthz")
        assert code == 200 and json.loads(body)["components"]["detect"]["assigned"] == 3
        code, text = _get(f"{server.url}/metrics")
        assert code == 200
        assert b'sauron_frames_in_total{stage="detect"} 7.0' in text
        assert b'sauron_dead_letters_total{reason="CodecError",stage="detect"} 1.0' in text
        assert b'sauron_frame_latency_seconds_bucket{le="0.25",stage="detect"} 1.0' in text
        time.sleep(0.6)
        assert _get(f"{server.url}/healthz")[0] == 503, "a loop that stopped beating is unhealthy"
        assert _get(f"{server.url}/nothing")[0] == 404
    finally:
        server.stop()


# ---------------------------------------------------------------------------- frame checks


def test_jpeg_dimensions_read_from_the_header(jpeg: bytes) -> None:
    h, w = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert jpeg_dimensions(jpeg) == (w, h)
    progressive = cv2.imencode(
        ".jpg", np.full((33, 47, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    assert jpeg_dimensions(progressive) == (47, 33)


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"", "zero-sized"),
        (b"GIF89a....", "not a JPEG"),
        (b"\xff\xd8\x00\x00\x00\x00", "no marker"),
        (b"\xff\xd8\xff\xe0\x00\x01", "segment length"),
        (b"\xff\xd8\xff\xda\x00\x08abcdef\xff\xd9", "no frame header"),
    ],
)
def test_check_frame_refuses_with_a_reason(data: bytes, phrase: str) -> None:
    with pytest.raises(FrameRejected, match=phrase):
        check_frame(Frame("cam", 0, time.time(), data), 10_000_000)


# ---------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def detect_handle() -> Any:
    s = load_settings(None, {"detect": {"tracking": False}})
    return detect_handler(s, DetectStage(s.detect, tracking=False), 4)


@pytest.fixture(scope="module")
def match_handle() -> Any:
    s = load_settings(None, {})
    return match_handler(s, MatchStage(s.match, Watchlist()), 4)


def _check_outputs(outputs: list[Output], topic_suffix: str) -> None:
    assert isinstance(outputs, list) and outputs
    for out in outputs:
        assert isinstance(out, Output) and isinstance(out.value, bytes)
        assert out.topic.endswith(topic_suffix) or out.topic.endswith(".sightings")


def _run_handler(handle: Any, value: bytes, topic_suffix: str) -> None:
    try:
        outputs = handle(value)
    except Exception:  # any Exception becomes a dead letter: that is the contract
        return
    _check_outputs(outputs, topic_suffix)
    if topic_suffix == ".detections":
        _, det, _ = codec.decode_detections(outputs[0].value or b"")
        assert len(det.embeddings) == len(det)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for pos, byte in edits:
        buf[pos % len(buf)] = byte
    return bytes(buf[:cut] if cut is not None else buf)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=12)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_detect_handler_arbitrary_bytes(detect_handle: Any, data: bytes) -> None:
    _run_handler(detect_handle, data, ".detections")


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 20000))
def test_fuzz_detect_handler_mutated_frames(
    detect_handle: Any, jpeg: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """Byte flips and truncations anywhere: envelope, metadata or JPEG."""
    message = codec.encode_frame(Frame("cam", 3, time.time(), jpeg))
    _run_handler(detect_handle, _mutate(message, edits, cut), ".detections")


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 20000))
def test_fuzz_detect_handler_mutated_jpeg_in_valid_envelope(
    detect_handle: Any, jpeg: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    """A well-formed message around a damaged JPEG reaches the image decoder."""
    bad = _mutate(jpeg, [(p % 600, b) for p, b in edits], cut)  # headers live up front
    message = codec.encode_frame(Frame("cam", 3, time.time(), bad))
    _run_handler(detect_handle, message, ".detections")


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 20000), faces=st.integers(0, 3))
def test_fuzz_match_handler_mutated_detections(
    match_handle: Any, jpeg: bytes, edits: list[tuple[int, int]], cut: int | None, faces: int
) -> None:
    rng = np.random.default_rng(faces)
    xy = rng.integers(0, 200, (faces, 2)).astype(np.int32)
    det = Detections(
        xyxy=np.concatenate([xy, xy + 30], axis=1),
        confidence=np.ones(faces, np.float32),
        landmarks=np.zeros((faces, 5, 2), np.float32),
        embeddings=rng.normal(size=(faces, 128)).astype(np.float32),
    )
    message = codec.encode_detections(Frame("cam", 1, time.time(), jpeg), det, {})
    _run_handler(match_handle, _mutate(message, edits, cut), ".annotated")


def test_fuzz_inputs_reach_every_outcome(detect_handle: Any, jpeg: bytes) -> None:
    """The fuzzed path is not only ever rejected: the intact message is detected, and a
    damaged JPEG in a valid envelope may still decode (libjpeg conceals damage)."""
    ok = detect_handle(codec.encode_frame(Frame("cam", 0, time.time(), jpeg)))
    assert len(ok) == 1
    frame, det, _ = codec.decode_detections(ok[0].value or b"")
    assert frame.number == 0 and len(det) == 1, "the sample photo shows one face"
    with pytest.raises(codec.CodecError):
        detect_handle(b"SAU" + bytes([9]) + uuid.uuid4().bytes)
