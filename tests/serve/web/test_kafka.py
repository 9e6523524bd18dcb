"""``sauron web`` over a real Kafka broker: watchlist changes reach matchers through the
compacted topic, live views read only the watched camera's partition, a record worker
(``sauron worker record``'s group) stores sightings, alerts go through the alerts topic
to the pages."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from sauron import codec
from sauron.bus.client import make_producer, wait_until
from sauron.bus.topics import Topics, camera_partition
from sauron.detect.stage import DetectStage
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.match.watchlist_topic import follow_watchlist
from sauron.record.kafka_worker import RecordFeed
from sauron.record.stage import RecordStage
from sauron.serve.web.server import WebServer, WebServices
from sauron.types import Frame

from .conftest import ADMIN_PASSWORD, make_settings, read_alerts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4


@pytest.fixture
def bootstrap(kafka_bootstrap: str) -> str:
    """The session's real broker (see tests/conftest.py)."""
    return kafka_bootstrap


def _cameras() -> tuple[str, str]:
    """Two camera names on different partitions."""
    lobby = "lobby"
    other = next(
        f"gate{i}"
        for i in range(100)
        if camera_partition(f"gate{i}", PARTITIONS) != camera_partition(lobby, PARTITIONS)
    )
    return lobby, other


def test_web_over_kafka(
    bootstrap: str,
    tmp_path: Path,
    photos: dict[str, Path],
    photo_frames: dict[str, bytes],
    detect_stage: DetectStage,
) -> None:
    lobby, gate = _cameras()
    prefix = f"w{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        f"sqlite:///{tmp_path / 'k.db'}",
        tmp_path,
        bus={"type": "kafka", "bootstrap_servers": bootstrap},
        topics={"prefix": prefix, "partitions": PARTITIONS},
    )
    services = WebServices(settings, pipeline=False)
    services.bootstrap_admin()
    services.start()
    server = WebServer(services.app, "127.0.0.1", 0).start()
    record = RecordStage(settings).start()  # what `sauron worker record` runs
    record_feed = RecordFeed(settings, record.recorder).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    matcher_list = Watchlist()  # what a running `sauron worker match` holds
    tail = follow_watchlist(settings, matcher_list)
    producer = make_producer(settings.bus)
    topics = Topics.from_config(settings.topics)
    try:
        token = client.post(
            "/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}
        r = client.post(
            "/api/people",
            headers=admin,
            data={"name": "obama"},
            files=[("photos", ("o.jpg", photos["obama.jpg"].read_bytes()))],
        )
        assert r.status_code == 201, r.text
        assert wait_until(lambda: matcher_list.names == ["obama"], 20), (
            "the enrollment reached the matcher through the watchlist topic"
        )

        match = MatchStage(settings.match, matcher_list)

        def publish(camera: str, photo: str, number: int) -> None:
            frame = Frame(camera, number, time.time(), photo_frames[photo])
            det, timings = detect_stage.process(frame)
            result, _ = match.process(frame, det, timings)
            producer.produce(
                topics.annotated,
                key=camera,
                value=codec.encode_result(result),
                partition=camera_partition(camera, PARTITIONS),
            )
            producer.flush(10)

        got: list[dict[str, Any]] = []
        frames: list[bytes] = []
        stop = threading.Event()

        def sse() -> None:
            read_alerts(server.url, admin, got, stop, timeout=60)

        def mjpeg() -> None:
            with (
                httpx.Client(base_url=server.url, timeout=60) as c,
                c.stream("GET", f"/api/cameras/{lobby}/stream.mjpeg", headers=admin) as resp,
            ):
                for chunk in resp.iter_bytes():
                    if b"Content-Type: image/jpeg" in chunk or frames:
                        frames.append(chunk)
                    if len(frames) >= 2 or stop.is_set():
                        return

        for fn in (sse, mjpeg):
            threading.Thread(target=fn, daemon=True).start()
        feed = services.app.state.kafka_feed
        assert wait_until(lambda: feed._tails, 20)
        time.sleep(1.0)  # the partition tail positions itself at the end
        for n in range(3):
            publish(lobby, "obama2.jpg", n)
            publish(gate, "biden.jpg", n)
            time.sleep(0.2)

        assert wait_until(lambda: len(got) >= 1, 30), "the alert came back through Kafka"
        assert got[0]["person"] == "obama" and got[0]["camera"] == lobby
        assert set(feed._tails) == {camera_partition(lobby, PARTITIONS)}, (
            "only the watched camera's partition is read"
        )
        cams = {c["camera"]: c for c in client.get("/api/cameras", headers=admin).json()}
        assert cams[lobby]["state"] == "live" and cams[lobby]["names"] == ["obama"]
        assert gate not in cams, "another partition's camera was not read"
        assert wait_until(lambda: len(frames) >= 1, 10)

        def stored() -> int:
            return len(client.get("/api/sightings", headers=admin).json()["items"])

        assert wait_until(lambda: stored() >= 2, 30), "the record worker stored sightings"
        people = {s["person"] for s in client.get("/api/sightings", headers=admin).json()["items"]}
        assert people == {"obama", None}
        alerts = client.get("/api/alerts", headers=admin).json()
        assert [(a["person"], a["camera"]) for a in alerts] == [("obama", lobby)]

        assert client.delete("/api/people/obama", headers=admin).status_code == 204
        assert wait_until(lambda: matcher_list.names == [], 20), "the deletion reached it"
        stop.set()
    finally:
        tail.stop()
        producer.flush(5)
        client.close()
        record_feed.stop()
        record_feed.join(30)
        record.stop()
        server.stop()
        services.stop()


class _Holding:
    """Stands in for the recorder: takes frames and reports them done only when told."""

    def __init__(self, finish_at_once: bool) -> None:
        self.finish_at_once = finish_at_once
        self.frames: list[int] = []
        self.waiting: list[Any] = []

    def add(self, result: Any, on_done: Any = None) -> None:
        self.frames.append(result.frame.number)
        if self.finish_at_once:
            on_done()
        else:
            self.waiting.append(on_done)

    def flush(self, timeout: float = 10.0) -> bool:
        return not self.waiting


def test_recorder_group_rereads_frames_the_recorder_had_not_finished(
    bootstrap: str, tmp_path: Path, photo_frames: dict[str, bytes]
) -> None:
    """A server that dies with frames still queued for its recorder loses none: the
    recorder group commits a frame's offset only once the recorder is done with it."""
    import numpy as np

    from sauron.bus.admin import ensure_topics
    from sauron.types import NUM_LANDMARKS, Detections, Result

    settings = make_settings(
        f"sqlite:///{tmp_path / 'r.db'}",
        tmp_path,
        bus={"type": "kafka", "bootstrap_servers": bootstrap},
        topics={"prefix": f"r{uuid.uuid4().hex[:8]}", "partitions": 1},
    )
    ensure_topics(settings)
    face = Detections(
        xyxy=np.array([[10, 10, 60, 60]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.ones((1, 128), np.float32),
    )
    producer = make_producer(settings.bus)
    jpeg = photo_frames["obama2.jpg"]
    for n in range(6):
        result = Result(Frame("lobby", n, time.time(), jpeg), face, time.time())
        producer.produce(Topics.from_config(settings.topics).annotated, codec.encode_result(result))
    assert producer.flush(30) == 0

    def run_feed(recorder: _Holding, until: Any, then: Any = None) -> None:
        feed = RecordFeed(settings, recorder).start()  # type: ignore[arg-type]
        try:
            assert wait_until(until, 60), recorder.frames
            if then is not None:
                then()
            time.sleep(2.5)  # two auto-commit intervals: whatever is stored gets committed
        finally:
            feed.stop()
            feed.join(30)

    def store_two() -> None:
        for done in first.waiting[:2]:
            done()

    first = _Holding(finish_at_once=False)
    # frames 0 and 1 stored, 2-5 still queued when the server dies
    run_feed(first, lambda: len(first.frames) == 6, store_two)

    second = _Holding(finish_at_once=True)
    run_feed(second, lambda: len(second.frames) >= 4)
    assert second.frames == [2, 3, 4, 5], "the unfinished frames, read again; no others"

    third = _Holding(finish_at_once=True)
    feed = RecordFeed(settings, third).start()  # type: ignore[arg-type]
    time.sleep(4)
    feed.stop()
    feed.join(30)
    assert third.frames == [], "everything finished was committed"
