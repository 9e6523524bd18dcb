"""Fixtures for the MQTT tests: a real Mosquitto broker and listeners
(``tests/mqtt_broker.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..mqtt_broker import Listener, Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(
        port: int,
        broker: Mosquitto | None = None,
        login: tuple[str, str] | None = None,
        session: str | None = None,
    ) -> Listener:
        made.append(Listener(port, broker, login, session))
        return made[-1]

    yield make
    for one in made:
        one.close()
