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
from sauron.bus.admin import ensure_topics
from sauron.bus.client import make_producer, wait_until
from sauron.bus.topics import Topics, camera_partition
from sauron.demo.synth import demo_clips
from sauron.detect.stage import DetectStage
from sauron.ingest.producer import IngestGroup
from sauron.ingest.reports import CameraReporter
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.match.watchlist_topic import follow_watchlist
from sauron.pipeline import kafka_frame_sink
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


def test_web_lists_the_cameras_an_ingest_elsewhere_reads(
    bootstrap: str, tmp_path: Path, photos: dict[str, Path]
) -> None:
    """The split deployment of the README: `sauron ingest` in one place, `sauron web`
    elsewhere with no camera in its settings. The web app lists the ingest's cameras
    from their reports, with the ingest side's health (a camera that fails says why)."""
    clip = demo_clips(tmp_path / "clips", frames=20)[0]
    prefix = f"r{uuid.uuid4().hex[:8]}"
    common = {
        "bus": {"type": "kafka", "bootstrap_servers": bootstrap},
        "topics": {"prefix": prefix, "partitions": PARTITIONS},
    }
    ingest_settings = make_settings(
        None,
        tmp_path / "ingest",
        cameras=[
            {"name": "door", "source": str(clip.path), "loop": True, "realtime": True},
            {"name": "yard", "source": str(tmp_path / "missing.mp4")},
        ],
        **common,
    )
    web_settings = make_settings(f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "web", **common)
    assert web_settings.cameras == []
    counts = ensure_topics(ingest_settings)
    producer, sink = kafka_frame_sink(ingest_settings, counts[f"{prefix}.frames"])
    ingest = IngestGroup(ingest_settings.cameras, sink=sink).start()
    reporter = CameraReporter(ingest_settings, ingest, interval_s=0.5)
    reporter.start()
    services = WebServices(web_settings, pipeline=False)
    services.bootstrap_admin()
    services.start()
    server = WebServer(services.app, "127.0.0.1", 0).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    try:
        token = client.post(
            "/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}

        def cameras() -> dict[str, Any]:
            return {c["camera"]: c for c in client.get("/api/cameras", headers=admin).json()}

        assert wait_until(lambda: {"door", "yard"} <= set(cameras()), 30), cameras()
        assert wait_until(lambda: cameras()["door"]["state"] == "running", 20), cameras()
        cams = cameras()
        assert cams["door"]["ingest"]["frames"] > 0 and not cams["door"]["ingest"]["stale"]
        assert cams["yard"]["state"] == "failed"
        assert "missing.mp4" in cams["yard"]["ingest"]["error"]
        # its stream opens (its frames come once workers annotate them) although no
        # setting here names it
        with client.stream("GET", "/api/cameras/door/stream.mjpeg", headers=admin) as resp:
            assert resp.status_code == 200
        ingest.stop.set()
        ingest.join(10)
        reporter.stop()
        assert wait_until(lambda: cameras()["door"]["state"] == "stopped", 20), cameras()
    finally:
        ingest.stop.set()
        producer.flush(5)
        client.close()
        server.stop()
        services.stop()
