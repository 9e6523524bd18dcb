"""The web app for real: uvicorn on 127.0.0.1, a real database (SQLite and PostgreSQL),
the real face models on the sample photos."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sauron.config import DetectConfig, Settings, load_settings
from sauron.detect.stage import DetectStage
from sauron.imaging import decode_jpeg, encode_jpeg, resize_max_width
from sauron.match.stage import MatchStage
from sauron.match.watchlist import Watchlist
from sauron.record.stage import RecordStage
from sauron.serve.web.server import WebServer, WebServices
from sauron.types import Frame

ADMIN_PASSWORD = "sentinel-" + uuid.uuid4().hex[:12]


def read_alerts(
    url: str,
    headers: dict[str, str],
    got: list[dict[str, Any]],
    stop: threading.Event,
    ready: threading.Event | None = None,
    timeout: float = 30,
) -> None:
    """Collects the server-sent ``alert`` events of ``url`` into ``got`` until ``stop``."""
    with (
        httpx.Client(base_url=url, timeout=timeout) as c,
        c.stream("GET", "/api/events", headers=headers) as resp,
    ):
        if ready is not None:
            ready.set()
        event = ""
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "alert":
                got.append(json.loads(line[6:]))
            if stop.is_set():
                return


@dataclass
class LiveApp:
    """A running web app, an HTTP client for it, and a real matcher feeding it."""

    url: str
    services: WebServices
    record: RecordStage  # what `sauron run` starts beside the web app
    client: httpx.Client
    watchlist: Watchlist = field(default_factory=Watchlist)

    def login(self, username: str, password: str) -> dict[str, str]:
        r = self.client.post("/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.login("admin", ADMIN_PASSWORD)

    def add_viewer(self, name: str = "viewer") -> dict[str, str]:
        pw = "watch-" + uuid.uuid4().hex
        r = self.client.post(
            "/api/users",
            headers=self.admin,
            json={"username": name, "password": pw, "role": "viewer"},
        )
        assert r.status_code == 201, r.text
        return self.login(name, pw)


def make_settings(db_url: str | None, tmp: Path, **sections: Any) -> Settings:
    """Test settings; a section given as a dict is merged into the defaults here, any
    other value (a list of cameras) replaces them."""
    base: dict[str, Any] = {
        "store": {"url": db_url, "data_dir": str(tmp / "data")},
        "web": {"port": 0, "admin_password": ADMIN_PASSWORD},
        "alerts": {"gap_s": 2.0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(None, base)


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., LiveApp]]:
    started: list[tuple[WebServices, RecordStage, WebServer, httpx.Client]] = []

    def start(db_url: str | None, **sections: Any) -> LiveApp:
        settings = make_settings(db_url, tmp_path, **sections)
        record = RecordStage(settings).start()
        services = WebServices(settings, store=record.store)
        services.attach_record(record)
        assert services.bootstrap_admin() is None, "the configured password is used"
        services.start()
        server = WebServer(services.app, "127.0.0.1", 0).start()
        client = httpx.Client(base_url=server.url, timeout=30)
        started.append((services, record, server, client))
        app = LiveApp(server.url, services, record, client)
        services.attach_watchlist(app.watchlist)
        record.attach_watchlist(app.watchlist)
        return app

    yield start
    for services, record, server, client in started:
        client.close()
        server.stop()
        record.stop()
        services.stop()


@pytest.fixture
def app(start_app: Callable[..., LiveApp], db_url: str) -> LiveApp:
    return start_app(db_url)


@pytest.fixture(scope="session")
def detect_stage() -> DetectStage:
    return DetectStage(DetectConfig(), tracking=False)


@pytest.fixture(scope="session")
def photo_frames(photos: dict[str, Path]) -> dict[str, bytes]:
    """The sample photos as 640-px-wide camera JPEGs."""
    return {
        name: encode_jpeg(resize_max_width(decode_jpeg(path.read_bytes()), 640), 90)
        for name, path in photos.items()
    }


Feed = Callable[[str, str, int, float], None]


@pytest.fixture
def feed(detect_stage: DetectStage, photo_frames: dict[str, bytes]) -> Callable[[LiveApp], Feed]:
    """Runs a sample photo as a camera frame through the real detect and match stages
    (matching against the app's live watchlist) into the app, like ``sauron run``."""

    def bind(app: LiveApp) -> Feed:
        match = MatchStage(app.services.settings.match, app.watchlist)

        def run(camera: str, photo: str, number: int, ts: float) -> None:
            frame = Frame(camera, number, ts, photo_frames[photo])
            det, timings = detect_stage.process(frame)
            result, _ = match.process(frame, det, timings)
            app.services.on_result(result)
            app.record.on_result(result)

        return run

    return bind
