"""MQTT against a real Mosquitto broker: appearance events, retained state, the Home
Assistant discovery configs (and that each topic they name carries what Home Assistant
reads there), a broker outage that loses no queued event, and a returning visitor's
alert."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sauron.bus.client import wait_until
from sauron.codec import Person
from sauron.config import DetectConfig, Settings, load_settings
from sauron.detect.stage import DetectStage
from sauron.imaging import decode_jpeg, encode_jpeg, resize_max_width
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.record.mqtt import topic_id
from sauron.record.stage import RecordStage
from sauron.types import NUM_LANDMARKS, Detections, Frame, Result

from ..mqtt_broker import Listener, Mosquitto

pytestmark = pytest.mark.mqtt

GAP_S = 1.0  # alerts.gap_s: an appearance ends after this long unseen


def settings_for(port: int, tmp: Path, gap_s: float = GAP_S, **mqtt: Any) -> Settings:
    return load_settings(
        None,
        {
            "cameras": [{"name": "lobby", "source": "unused.mp4"}],
            "store": {"url": f"sqlite:///{tmp / 'mqtt.db'}", "data_dir": str(tmp / "data")},
            "web": {"stale_after_s": 30},
            "alerts": {"gap_s": gap_s},
            "mqtt": {"host": "127.0.0.1", "port": port, **mqtt},
        },
    )


def face_result(jpeg: bytes, camera: str, number: int, person: str | None) -> Result:
    det = Detections(
        xyxy=np.array([[60, 40, 180, 190]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.ones((1, 128), np.float32),
        names=(person,),
        distances=np.array([0.3], np.float32),
    )
    return Result(Frame(camera, number, time.time(), jpeg), det, time.time())


@pytest.fixture
def watched() -> Watchlist:
    one = np.ones((1, 128), np.float32)
    return Watchlist([Person("obama", one), Person("Joe Biden", one)])


@pytest.fixture
def recording(tmp_path: Path, watched: Watchlist) -> Iterator[Callable[..., RecordStage]]:
    started: list[RecordStage] = []

    def start(port: int, gap_s: float = GAP_S, **mqtt: Any) -> RecordStage:
        record = RecordStage(settings_for(port, tmp_path, gap_s, **mqtt))
        record.attach_watchlist(watched)
        started.append(record.start())
        return record

    yield start
    for record in started:
        record.stop()


def events(listener: Listener, phase: str | None = None) -> list[dict[str, Any]]:
    out = [json.loads(p) for p in listener.on("sauron/events")]
    return [e for e in out if phase is None or e["phase"] == phase]


def test_events_state_and_home_assistant_discovery(
    mosquitto: Mosquitto,
    listen: Callable[[int], Listener],
    recording: Callable[..., RecordStage],
    photos: dict[str, Path],
) -> None:
    mosquitto.start()
    ha = listen(mosquitto.port)
    record = recording(mosquitto.port, base_url="https://sauron.example")
    assert record.mqtt is not None
    assert wait_until(lambda: record.mqtt is not None and record.mqtt.connected, 10)
    jpeg = photos["obama.jpg"].read_bytes()
    for n in range(3):
        record.on_result(face_result(jpeg, "lobby", n, "obama"))
        time.sleep(0.3)
    assert record.flush(10)
    alerts = record.store.alerts()
    assert [(a.person, a.camera) for a in alerts] == [("obama", "lobby")]

    assert not events(ha, "end"), "no frame of the camera after the gap yet"
    later = time.time() + GAP_S + 0.5  # the camera's next frame, nobody in it
    record.on_result(Result(Frame("lobby", 3, later, jpeg), Detections.empty(128), later))
    assert wait_until(lambda: events(ha, "end"), 15), "a frame after the gap ended it"
    start, end = events(ha, "start")[0], events(ha, "end")[0]
    assert start["person"] == "obama" and start["camera"] == "lobby"
    assert start["alert_id"] == end["alert_id"] == alerts[0].id
    assert start["snapshot_url"] == f"https://sauron.example/api/alerts/{alerts[0].id}/snapshot.jpg"
    assert end["clip_url"] == f"https://sauron.example/api/alerts/{alerts[0].id}/clip.mp4"
    assert end["frames"] == 3 and end["last_seen_at"] > end["started_at"]
    assert events(ha)[0]["phase"] == "start"
    assert wait_until(lambda: ha.latest.get("sauron/person/obama/present") == b"OFF", 10)
    assert b"ON" in ha.on("sauron/person/obama/present"), "present while seen"

    # Home Assistant's discovery: one config per entity, each naming topics that carry state
    configs = {
        t: json.loads(p) for t, p in ha.latest.items() if t.startswith("homeassistant/") and p
    }
    assert set(configs) == {
        "homeassistant/sensor/sauron_lobby/last_person/config",
        "homeassistant/camera/sauron_lobby/snapshot/config",
        "homeassistant/binary_sensor/sauron_person_obama/present/config",
        f"homeassistant/binary_sensor/sauron_person_{topic_id('Joe Biden')}/present/config",
    }
    ids = [c["unique_id"] for c in configs.values()]
    assert len(set(ids)) == len(ids), "unique ids are unique"
    for topic, config in configs.items():
        assert config["name"] and config["device"]["identifiers"], topic
        for a in config["availability"]:
            assert ha.latest[a["topic"]] == config["payload_available"].encode(), a
    sensor = configs["homeassistant/sensor/sauron_lobby/last_person/config"]
    assert ha.latest[sensor["state_topic"]] == b"obama"
    attrs = json.loads(ha.latest[sensor["json_attributes_topic"]])
    assert attrs["alert_id"] == alerts[0].id and attrs["distance"] == pytest.approx(0.3)
    camera = configs["homeassistant/camera/sauron_lobby/snapshot/config"]
    snapshot = ha.latest[camera["topic"]]
    assert snapshot[:2] == b"\xff\xd8" and snapshot != jpeg, "the annotated frame, a JPEG"
    present = configs["homeassistant/binary_sensor/sauron_person_obama/present/config"]
    assert ha.latest[present["state_topic"]] == present["payload_off"].encode()
    assert present["device_class"] == "presence"
    # every state topic is retained: a Home Assistant that starts later reads it at once
    late = listen(mosquitto.port)
    assert wait_until(lambda: late.latest.get(sensor["state_topic"]) == b"obama", 10)
    assert late.latest.get(camera["topic"]) == snapshot

    record.stop()
    assert wait_until(lambda: ha.latest.get("sauron/status") == b"offline", 10)
    assert ha.latest["sauron/camera/lobby/availability"] == b"offline"


def test_a_returning_visitors_alert_is_an_event(
    mosquitto: Mosquitto,
    listen: Callable[[int], Listener],
    tmp_path: Path,
    photos: dict[str, Path],
) -> None:
    """Real faces through the real detect and match stages, nobody enrolled: Biden's
    second visit to the lobby (``visitors.alert_cameras``) is a "visitor" event."""
    mosquitto.start()
    ha = listen(mosquitto.port)
    settings = load_settings(
        None,
        {
            "cameras": [{"name": "lobby", "source": "unused.mp4"}],
            "store": {"url": f"sqlite:///{tmp_path / 'mqtt.db'}", "data_dir": str(tmp_path)},
            "visitors": {"alert_cameras": ["lobby"]},
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "base_url": "https://s.lan"},
        },
    )
    record = RecordStage(settings).start()
    try:
        assert wait_until(lambda: record.mqtt is not None and record.mqtt.connected, 10)
        detect = DetectStage(DetectConfig(), tracking=False)
        match = MatchStage(settings.match, Watchlist())
        jpeg = encode_jpeg(resize_max_width(decode_jpeg(photos["biden.jpg"].read_bytes()), 640))
        for n in range(2):
            frame = Frame("lobby", n, time.time(), jpeg)
            det, timings = detect.process(frame)
            record.on_result(match.process(frame, det, timings)[0])
        assert record.flush(10)
        (alert,) = record.store.alerts()
        assert alert.visitor_id is not None

        def got() -> list[dict[str, Any]]:
            return [e for e in events(ha) if e["type"] == "visitor"]

        assert wait_until(got, 10)
        (event,) = got()
        assert event["phase"] == "return" and event["alert_id"] == alert.id
        assert event["person"] == f"visitor {alert.visitor_id}" == alert.person
        assert (event["visitor_id"], event["camera"]) == (alert.visitor_id, "lobby")
        assert (event["visits"], event["reasons"]) == (2, ["camera"])
        assert event["snapshot_url"] == f"https://s.lan/api/alerts/{alert.id}/snapshot.jpg"
        assert not events(ha, "start"), "no watched person's appearance"
        assert "sauron/camera/lobby/last_person" not in ha.latest
    finally:
        record.stop()


def test_a_broker_outage_loses_no_queued_event(
    mosquitto: Mosquitto,
    listen: Callable[[int], Listener],
    recording: Callable[..., RecordStage],
    photos: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Home Assistant's session outlives the restart (a broker with persistence), so what
    # the publisher sends before Home Assistant is back is queued for it, not lost
    mosquitto.keep_sessions().start()
    ha = listen(mosquitto.port, session="home-assistant")
    record = recording(mosquitto.port)
    assert wait_until(lambda: record.mqtt is not None and record.mqtt.connected, 10)
    assert wait_until(lambda: ha.latest.get("sauron/status") == b"online", 10)
    mosquitto.stop()
    assert wait_until(lambda: record.mqtt is not None and not record.mqtt.connected, 30)

    jpeg = photos["obama.jpg"].read_bytes()
    for n, person in enumerate(["obama", "Joe Biden", "obama"]):
        record.on_result(face_result(jpeg, "lobby", n, person))
        if n == 1:
            time.sleep(GAP_S + 0.5)  # obama's first appearance ends: the third is new
    assert record.flush(10)
    stored = sorted(a.id for a in record.store.alerts())
    assert len(stored) == 3, "the store does not wait for the broker"
    assert record.mqtt is not None and record.mqtt.queued >= 3

    with ha.lock:
        seen = len(ha.messages)
    mosquitto.start()  # the same port
    assert wait_until(lambda: len(events(ha, "start")) == 3, 30), events(ha)
    assert sorted(e["alert_id"] for e in events(ha, "start")) == stored
    assert record.mqtt.dropped == 0

    # the retained state is published again after the reconnect: delivered live (retain
    # flag off), not replayed from what the broker kept
    def live(topic: str) -> list[bytes]:
        with ha.lock:
            return [p for t, p, retained in ha.messages[seen:] if t == topic and not retained]

    assert wait_until(lambda: b"online" in live("sauron/status"), 10)
    assert live("homeassistant/camera/sauron_lobby/snapshot/config")
    assert "lost the broker" in caplog.text


def test_a_full_queue_drops_the_oldest_event_and_says_so(
    mosquitto: Mosquitto,
    listen: Callable[[int], Listener],
    recording: Callable[..., RecordStage],
    photos: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "sauron.record.mqtt")
    # the broker is not up yet; no appearance ends (its event would push out a start)
    record = recording(mosquitto.port, gap_s=600, queue_size=2)
    jpeg = photos["obama.jpg"].read_bytes()
    cameras = ["a", "b", "c", "d"]
    for n, camera in enumerate(cameras):
        record.on_result(face_result(jpeg, camera, n, "obama"))
    assert record.flush(10)
    assert record.mqtt is not None and record.mqtt.dropped == 2
    assert "dropped the oldest" in caplog.text

    mosquitto.start()
    ha = listen(mosquitto.port)
    assert wait_until(lambda: len(events(ha, "start")) == 2, 30)
    assert [e["camera"] for e in events(ha, "start")] == ["c", "d"], "the newest were kept"


def test_a_user_and_password_over_tls(
    mosquitto: Mosquitto,
    listen: Callable[..., Listener],
    recording: Callable[..., RecordStage],
    photos: dict[str, Path],
) -> None:
    mosquitto.secure("sauron", "pw-" + "x" * 12).start()
    assert mosquitto.ca is not None
    ha = listen(mosquitto.port, mosquitto, ("sauron", "pw-" + "x" * 12))
    record = recording(
        mosquitto.port,
        username="sauron",
        password="pw-" + "x" * 12,
        tls=True,
        ca_file=str(mosquitto.ca),
    )
    assert wait_until(lambda: record.mqtt is not None and record.mqtt.connected, 15)
    record.on_result(face_result(photos["obama.jpg"].read_bytes(), "lobby", 0, "obama"))
    assert wait_until(lambda: events(ha, "start"), 15), mosquitto.log.read_text()
    assert events(ha, "start")[0]["person"] == "obama"


def test_a_wrong_password_is_refused_and_said(
    mosquitto: Mosquitto,
    recording: Callable[..., RecordStage],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mosquitto.secure("sauron", "right-password").start()
    assert mosquitto.ca is not None
    record = recording(
        mosquitto.port, username="sauron", password="wrong", tls=True, ca_file=str(mosquitto.ca)
    )
    assert wait_until(lambda: "refused the connection" in caplog.text, 15)
    assert record.mqtt is not None and not record.mqtt.connected
    assert record.parts()["mqtt"] == "reconnecting"
