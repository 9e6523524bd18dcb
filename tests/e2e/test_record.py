"""``sauron run --no-web``: the record stage stores every sighting and alert of a run with
no web app (``--db URL``), on real footage with a watched person, on both buses; and
publishes them to a real MQTT broker named by ``SAURON_MQTT__HOST``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from sauron.bus.client import wait_until
from sauron.config import StoreConfig
from sauron.demo.synth import ClipTruth
from sauron.store.db import SightingFilter, Store

from ..mqtt_broker import Listener, Mosquitto
from .test_cli import _camera_args, bus_args, sauron

pytestmark = pytest.mark.slow


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    (tmp_path / "broker").mkdir()
    one = Mosquitto(tmp_path / "broker").start()
    try:
        yield one
    finally:
        one.stop()


@pytest.mark.parametrize("bus", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_a_run_without_the_web_app_stores_sightings_and_alerts(
    bus: str,
    clips: list[ClipTruth],
    watchlist_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = f"sqlite:///{tmp_path / 'record.db'}"
    out = tmp_path / "results.jsonl"
    proc = sauron(
        "run",
        *_camera_args(clips),
        *bus_args(bus, request),
        "--watchlist",
        str(watchlist_dir),
        "--no-web",
        "--db",
        url,
        "--results",
        str(out),
        "--until-done",
        "--fast",
        "--processes",
        "2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "record: storing sightings and alerts in sqlite:///" in proc.stderr

    records = [json.loads(line) for line in out.read_text().splitlines()]
    named = {r["camera"] for r in records for f in r["faces"] if f["person"] == "obama"}
    with_faces = {(r["camera"], r["frame"]) for r in records if r["faces"]}
    assert named, "the footage shows the watched person"

    store = Store.open(StoreConfig(url=url, data_dir=tmp_path / "data"))
    try:
        sightings = store.sightings(SightingFilter(), limit=100_000)
        alerts = store.alerts(limit=1000)
        alert_clips = {a.id: store.alert_clip(a.id) for a in alerts}
    finally:
        store.close()
    assert sightings, "sightings were stored"
    assert {(s.camera, s.frame) for s in sightings} <= with_faces, "only frames with faces"
    assert all(s.has_snapshot for s in sightings)
    assert {s.camera for s in sightings if s.person == "obama"} == named
    # one alert per appearance: each camera that showed the person has one at least, and
    # no camera that never named him has any
    assert {a.camera for a in alerts} == named
    assert {a.person for a in alerts} == {"obama"}
    for a in alerts:
        assert a.has_snapshot and a.frames >= 1 and a.last_seen_at >= a.started_at
    for a in alerts:  # each appearance's clip, beside the database (media/ in its folder)
        clip = alert_clips[a.id]
        assert clip is not None and clip.is_relative_to(tmp_path / "media"), a
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert list(container.decode(stream)), "frames were encoded"
    obama = [r for r in records if any(f["person"] == "obama" for f in r["faces"])]
    for cam in named:
        ts = min(r["ts"] for r in obama if r["camera"] == cam)
        assert min(a.started_at for a in alerts if a.camera == cam) == pytest.approx(ts, abs=1e-3)


def _one_glimpse_clip(path: Path, photo: Path, *, frames: int = 14, at: int = 2) -> Path:
    """An .mp4 of an empty grey scene where ``photo`` shows in frame ``at`` only."""
    width, height = 640, 360
    face = cv2.imread(str(photo))
    k = min(width / face.shape[1], height / face.shape[0])
    face = cv2.resize(face, (int(face.shape[1] * k), int(face.shape[0] * k)))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for f in range(frames):
            image = np.full((height, width, 3), 90, np.uint8)
            if f == at:
                image[: face.shape[0], : face.shape[1]] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("bus", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_a_face_seen_in_one_video_frame_is_named_stored_and_alerted_when_its_track_ends(
    bus: str,
    photos: dict[str, Path],
    watchlist_dir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """One marginal match (farther than ``match.confirm_above``) in a single frame: the
    frame's own line is unnamed, a later line names it (``late``, one vote), and the store
    holds that frame's sighting named, with its snapshot, and an alert."""
    clip = _one_glimpse_clip(tmp_path / "door.mp4", photos["obama2.jpg"])
    url = f"sqlite:///{tmp_path / 'record.db'}"
    out = tmp_path / "results.jsonl"
    proc = sauron(
        "run",
        "--camera",
        f"door={clip}",
        *bus_args(bus, request),
        "--watchlist",
        str(watchlist_dir),
        "--no-web",
        "--db",
        url,
        "--results",
        str(out),
        "--until-done",
        "--fast",
        env={"SAURON_MATCH__CONFIRM_ABOVE": "0.3"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 14
    (seen,) = [r for r in records if r["faces"]]
    assert seen["frame"] == 2 and seen["faces"][0]["person"] is None
    late = [x for r in records for x in r.get("late", [])]
    assert [(x["frame"], [f["person"] for f in x["faces"]]) for x in late] == [(2, ["obama"])]
    assert late[0]["faces"][0]["votes"] == 1 and late[0]["faces"][0]["distance"] > 0.3

    store = Store.open(StoreConfig(url=url, data_dir=tmp_path / "data"))
    try:
        sightings = store.sightings(SightingFilter(), limit=1000)
        alerts = store.alerts(limit=100)
    finally:
        store.close()
    named = [s for s in sightings if s.person == "obama"]
    assert [(s.frame, s.votes) for s in named] == [(2, 1)]
    assert named[0].has_snapshot and named[0].ts == pytest.approx(seen["ts"])
    assert [(a.person, a.camera) for a in alerts] == [("obama", "door")]
    assert alerts[0].started_at == pytest.approx(seen["ts"])


@pytest.mark.mqtt
def test_a_run_without_the_web_app_publishes_its_appearances_over_mqtt(
    clips: list[ClipTruth], watchlist_dir: Path, tmp_path: Path, broker: Mosquitto
) -> None:
    ha = Listener(broker.port)
    try:
        proc = sauron(
            "run", *_camera_args(clips), "--watchlist", str(watchlist_dir), "--no-web",
            "--until-done", "--fast", "--processes", "2",
            env={
                "SAURON_MQTT__HOST": "127.0.0.1",
                "SAURON_MQTT__PORT": str(broker.port),
                "XDG_DATA_HOME": str(tmp_path / "xdg"),  # the default database goes here
            },
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        store = Store.open(StoreConfig(data_dir=tmp_path / "xdg" / "sauron"))
        try:
            alerts = {a.id: a for a in store.alerts(limit=1000)}
        finally:
            store.close()
        assert alerts, "the run stored alerts in the default database"

        def events(phase: str) -> list[dict[str, Any]]:
            found = [json.loads(p) for p in ha.on("sauron/events")]
            return [e for e in found if e["phase"] == phase]

        assert wait_until(lambda: ha.latest.get("sauron/status") == b"offline", 20)
        starts, ends = events("start"), events("end")
        assert sorted(e["alert_id"] for e in starts) == sorted(alerts), "one start per alert"
        assert sorted(e["alert_id"] for e in ends) == sorted(alerts), "each ended at the stop"
        for e in starts:
            alert = alerts[e["alert_id"]]
            assert (e["person"], e["camera"]) == (alert.person, alert.camera)
        config = "homeassistant/binary_sensor/sauron_person_obama/present/config"
        assert json.loads(ha.latest[config])["state_topic"] == "sauron/person/obama/present"
        assert ha.latest["sauron/person/obama/present"] == b"OFF"
        assert b"ON" in ha.on("sauron/person/obama/present")
    finally:
        ha.close()
