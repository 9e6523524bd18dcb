"""A real Mosquitto broker (Debian's ``mosquitto`` package) for the MQTT tests: started on
a free loopback port with a generated configuration, stopped by its pid, restartable on
the same port (a broker outage); and a client that records what the broker delivers.
Shared by tests/record and tests/e2e (their fixtures start it)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
from functools import partial
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto (scripts/test does)")
    return found


class Mosquitto:
    """One broker process at a time on ``port``, nothing kept on disk: anonymous, or with
    :meth:`secure` a user and password over TLS (a CA made for the test)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.ca: Path | None = None
        self._persist = "persistence false\n"
        self._write("allow_anonymous true\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def _write(self, extra: str) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n" + self._persist + f"log_dest file {self.log}\n"
            f"user {getpass.getuser()}\n" + extra  # started as root: keep reading our files
        )

    def keep_sessions(self) -> Mosquitto:
        """Keep subscribers' sessions (and retained messages) across a restart, as a
        broker with persistence on disk does: a subscriber with a session of its own then
        misses nothing published while it was reconnecting."""
        self._persist = (
            f"persistence true\npersistence_location {self.folder}/\nqueue_qos0_messages true\n"
        )
        self._write("allow_anonymous true\n")
        return self

    def secure(self, user: str, password: str) -> Mosquitto:
        """Ask for ``user``/``password`` and speak TLS only, with a certificate for
        127.0.0.1 signed by a CA made here (``self.ca``)."""
        d = self.folder
        passwd = d / "passwd"
        run = partial(subprocess.run, check=True, capture_output=True, timeout=60)
        run(["mosquitto_passwd", "-b", "-c", str(passwd), user, password])
        run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=sauron test CA",
                "-keyout",
                str(d / "ca.key"),
                "-out",
                str(d / "ca.crt"),
            ]
        )
        run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(d / "server.key"),
                "-out",
                str(d / "server.csr"),
            ]
        )
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run(["openssl", "x509", "-req", "-in", str(d / "server.csr"), "-days", "1",
             "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"), "-CAcreateserial",
             "-extfile", str(d / "san.ext"), "-out", str(d / "server.crt")])  # fmt: skip
        self.ca = d / "ca.crt"
        self._write(
            f"allow_anonymous false\npassword_file {passwd}\n"
            f"cafile {self.ca}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        )
        return self

    def start(self) -> Mosquitto:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(200):  # bounded: at most ~10 s
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                pytest.fail(f"mosquitto did not start: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # by its pid
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


class Listener:
    """A subscriber to every topic (what Home Assistant would read): the latest payload of
    each topic, and every message in order. Reconnects (and subscribes again) by itself."""

    def __init__(
        self,
        port: int,
        broker: Mosquitto | None = None,
        login: tuple[str, str] | None = None,
        session: str | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.latest: dict[str, bytes] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        # with a session name the broker keeps the subscription and queues what comes
        # while this client is away
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or "",
            clean_session=session is None,
            protocol=paho.MQTTv311,
        )
        if broker is not None and broker.ca is not None:
            self.client.tls_set(ca_certs=str(broker.ca))
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async("127.0.0.1", port, 30)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            payload = bytes(msg.payload)
            self.latest[msg.topic] = payload
            self.messages.append((msg.topic, payload, bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
