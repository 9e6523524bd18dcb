"""Live views, privacy blur, webhook and retention of the running app (SQLite)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from sauron.codec import CameraReport
from sauron.imaging import decode_jpeg
from sauron.serve.web import live as live_module
from sauron.serve.web.live import LiveHub

from .conftest import Feed, LiveApp


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'live.db'}"


def _enroll_obama(app: LiveApp, photos: dict[str, Path]) -> None:
    r = app.client.post(
        "/api/people",
        headers=app.admin,
        data={"name": "obama"},
        files=[("photos", ("o.jpg", photos["obama.jpg"].read_bytes()))],
    )
    assert r.status_code == 201, r.text


def _sharpness(bgr: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_stream_frames_rate_latency_and_stopped_camera(
    start_app: Callable[..., LiveApp],
    sqlite_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
    photo_frames: dict[str, bytes],
) -> None:
    app = start_app(sqlite_url, web={"stale_after_s": 1.5})
    _enroll_obama(app, photos)
    admin = app.admin
    run = feed(app)
    parts: list[bytes] = []

    def read_stream() -> None:
        with app.client.stream("GET", "/api/cameras/lobby/stream.mjpeg", headers=admin) as r:
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                while True:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0 or b"Content-Length: " not in buf[:head_end]:
                        break
                    length = int(buf[:head_end].split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    body = buf[head_end + 4 : head_end + 4 + length]
                    if len(body) < length:
                        break
                    parts.append(body)
                    buf = buf[head_end + 4 + length :]
                if len(parts) >= 3:
                    return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    stamps = []
    for n in range(8):
        stamps.append(time.time())
        run("lobby", "obama2.jpg", n, stamps[-1])
        time.sleep(0.1)
    run("lobby", "obama2.jpg", 2, stamps[2])  # a late, older frame is not shown
    reader.join(10)
    assert len(parts) >= 3
    want = decode_jpeg(photo_frames["obama2.jpg"]).shape
    assert all(decode_jpeg(p).shape == want for p in parts)

    cams = {c["camera"]: c for c in app.client.get("/api/cameras", headers=admin).json()}
    lobby = cams["lobby"]
    assert lobby["state"] == "live" and lobby["frame"] == 7 and lobby["skipped"] == 1
    assert 0 < lobby["fps"] < 30 and lobby["latency_ms"] > 0  # rate depends on machine load
    assert lobby["names"] == ["obama"]
    time.sleep(1.7)
    lobby = app.client.get("/api/cameras", headers=admin).json()[0]
    assert lobby["state"] == "stopped" and lobby["names"] == []


def test_privacy_blurs_faces_not_on_the_watchlist(
    start_app: Callable[..., LiveApp],
    sqlite_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
    photo_frames: dict[str, bytes],
) -> None:
    app = start_app(sqlite_url, web={"privacy_blur": True})
    _enroll_obama(app, photos)
    admin = app.admin
    run = feed(app)
    run("lobby", "biden.jpg", 0, time.time())
    run("gate", "obama2.jpg", 0, time.time())
    assert app.record.flush(20)
    rows = app.client.get("/api/sightings", headers=admin).json()["items"]
    stranger = next(s for s in rows if s["person"] is None)
    watched = next(s for s in rows if s["person"] == "obama")

    x0, y0, x1, y1 = (v + d for v, d in zip(stranger["box"], (8, 8, -8, -8), strict=True))
    original = decode_jpeg(photo_frames["biden.jpg"])[y0:y1, x0:x1]
    shown = decode_jpeg(app.client.get("/api/cameras/lobby/latest.jpg", headers=admin).content)
    assert _sharpness(shown[y0:y1, x0:x1]) < 0.2 * _sharpness(original), "live view blurred"

    snap_stranger = decode_jpeg(app.client.get(stranger["snapshot_url"], headers=admin).content)
    snap_watched = decode_jpeg(app.client.get(watched["snapshot_url"], headers=admin).content)
    assert _sharpness(snap_stranger) < 0.2 * _sharpness(snap_watched), "snapshot blurred"
    w = decode_jpeg(app.client.get("/api/cameras/gate/latest.jpg", headers=admin).content)
    gx0, gy0, gx1, gy1 = (v + d for v, d in zip(watched["box"], (8, 8, -8, -8), strict=True))
    orig_w = decode_jpeg(photo_frames["obama2.jpg"])[gy0:gy1, gx0:gx1]
    assert _sharpness(w[gy0:gy1, gx0:gx1]) > 0.5 * _sharpness(orig_w), (
        "a watched face stays visible"
    )


def _green_share(bgr: np.ndarray) -> float:
    """Share of pixels in the colour of a watched person's box (BGR 40, 200, 40)."""
    near = np.abs(bgr.astype(int) - (40, 200, 40)).max(axis=2) < 40
    return float(near.mean())


def test_live_view_draws_the_named_boxes_on_demand(
    start_app: Callable[..., LiveApp],
    sqlite_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
    photo_frames: dict[str, bytes],
) -> None:
    """The matcher does not draw (``match.draw`` off by default): the frame shown to a
    viewer gets its boxes and names when it is asked for."""
    app = start_app(sqlite_url)
    assert app.services.settings.match.draw is False
    _enroll_obama(app, photos)
    run = feed(app)
    run("gate", "obama2.jpg", 0, time.time())
    shown = decode_jpeg(app.client.get("/api/cameras/gate/latest.jpg", headers=app.admin).content)
    original = decode_jpeg(photo_frames["obama2.jpg"])
    assert shown.shape == original.shape
    assert _green_share(original) < 0.001
    assert _green_share(shown) > 0.005, "the watched person's box is drawn"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def test_alerts_reach_the_webhook_and_old_sightings_expire(
    start_app: Callable[..., LiveApp],
    sqlite_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, got = webhook
    app = start_app(
        sqlite_url,
        alerts={"webhook_url": url},
        store={"retention_days": 0.0002, "retention_check_s": 1},
    )  # 17 s
    _enroll_obama(app, photos)
    run = feed(app)
    run("gate", "obama2.jpg", 0, time.time() - 3600)  # captured an hour ago
    run("gate", "obama3.jpg", 1, time.time())
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(e["person"], e["camera"], e["v"]) for e in got] == [("obama", "gate", 1)] * 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = app.client.get("/api/sightings", headers=app.admin).json()["items"]
        if len(items) == 1:
            break
        time.sleep(0.2)
    assert [s["frame"] for s in items] == [1], "the hour-old sighting was deleted"
    assert len(app.client.get("/api/alerts", headers=app.admin).json()) == 1


def test_a_camera_without_frames_that_is_reconnecting_says_so() -> None:
    hub = LiveHub()
    hub.register("door")
    hub.register("desk")
    assert {c["camera"]: c["state"] for c in hub.status()} == {"door": "waiting", "desk": "waiting"}
    hub.source_states = lambda: {"camera-door": "reconnecting", "camera-desk": "running"}
    assert {c["camera"]: c["state"] for c in hub.status()} == {
        "door": "reconnecting",
        "desk": "waiting",
    }


def test_an_ingest_report_lists_a_camera_and_tells_its_state() -> None:
    hub = LiveHub()
    hub.report(CameraReport(camera="yard", state="reconnecting", frames=40, ts=time.time()))
    hub.report(CameraReport(camera="yard", state="running", frames=30, ts=time.time() - 60))
    (yard,) = hub.status()
    assert yard["camera"] == "yard" and yard["state"] == "reconnecting", "older report ignored"
    assert yard["ingest"]["frames"] == 40 and not yard["ingest"]["stale"]
    hub.report(CameraReport(camera="yard", state="failed", frames=41, ts=time.time(), error="gone"))
    (yard,) = hub.status()
    assert (yard["state"], yard["ingest"]["error"]) == ("failed", "gone")


def test_cameras_past_the_limit_are_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever can write the cameras topic could name cameras without end: one web
    server lists at most MAX_CAMERAS, counts and logs the rest."""
    monkeypatch.setattr(live_module, "MAX_CAMERAS", 3)
    hub = LiveHub()
    for i in range(5):
        hub.report(CameraReport(camera=f"cam{i}", state="running", frames=1, ts=time.time()))
    assert hub.cameras() == ["cam0", "cam1", "cam2"] and hub.refused == 2
    hub.report(CameraReport(camera="cam1", state="failed", frames=2, ts=time.time()))
    assert [c["state"] for c in hub.status() if c["camera"] == "cam1"] == ["failed"]
