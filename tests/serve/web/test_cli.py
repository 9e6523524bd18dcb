"""``sauron web --bus kafka`` as a child process, as an operator starts it: it creates the
topics, serves the API on a free loopback port, refuses requests without a token, and
stops cleanly on SIGINT (Ctrl-C) and on SIGTERM (a service manager)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from .conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.kafka

START_S = 120.0  # imports, migrations, topic creation, Kafka consumers
STOP_S = 60.0  # uvicorn's graceful shutdown, Kafka consumers leaving their group


def _wait_for_url(log: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The address ``sauron web`` prints on stderr (``web: http://127.0.0.1:PORT ...``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"^web: (http://127\.0\.0\.1:\d+)", log.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"sauron web printed no address (exit status {proc.poll()}):\n{log.read_text()[-4000:]}"
    )


def _wait_for_health(client: httpx.Client, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = client.get("/api/health")
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
            last = r.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"/api/health did not answer: {last!r}")


@pytest.fixture
def web_process(
    kafka_bootstrap: str, db_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """A running ``sauron web`` over the session broker, its stderr log and topic prefix;
    killed by its pid afterwards if the test left it running."""
    prefix = f"c{uuid.uuid4().hex[:10]}"
    log = tmp_path / "web.log"
    env = {
        **os.environ,
        "SAURON_WEB__ADMIN_PASSWORD": ADMIN_PASSWORD,
        "SAURON_STORE__DATA_DIR": str(tmp_path / "data"),
    }
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sauron.cli",
                "web",
                "--bus",
                "kafka",
                "--bootstrap",
                kafka_bootstrap,
                "--topic-prefix",
                prefix,
                "--partitions",
                "2",
                "--web-host",
                "127.0.0.1",
                "--web-port",
                "0",
                "--db",
                db_url,
                "--camera",
                "lobby=rtsp://192.0.2.1/stream",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield proc, log, prefix
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sauron_web_over_kafka_serves_then_stops_cleanly_on_a_signal(
    web_process: tuple[subprocess.Popen[bytes], Path, str],
    kafka_bootstrap: str,
    sig: signal.Signals,
) -> None:
    proc, log, prefix = web_process
    url = _wait_for_url(log, proc, START_S)
    with httpx.Client(base_url=url, timeout=30) as client:
        health = _wait_for_health(client, 30)
        assert health["ok"] is True and health["cameras"] == 1

        for method, path in [("GET", "/api/cameras"), ("GET", "/api/me"), ("GET", "/api/people")]:
            r = client.request(method, path)
            assert r.status_code == 401, (path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
        r = client.get("/api/cameras", headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401

        r = client.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        cameras = client.get("/api/cameras", headers=admin)
        assert cameras.status_code == 200
        assert [c["camera"] for c in cameras.json()] == ["lobby"]

    admin_client = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin_client.list_topics(timeout=30).topics
    assert {f"{prefix}.annotated", f"{prefix}.watchlist"} <= set(topics), "topics created"

    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    try:
        rc = proc.wait(STOP_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"sauron web still running {STOP_S} s after {sig.name}:\n{log.read_text()[-4000:]}"
        ) from None
    stderr = log.read_text()
    assert rc == 0, f"exit status {rc} after {sig.name}:\n{stderr[-4000:]}"
    assert "Traceback" not in stderr, stderr[-4000:]
    assert time.monotonic() - t0 < STOP_S
