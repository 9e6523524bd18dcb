"""Fixtures for end-to-end tests: a real Kafka broker for the session, demo clips."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sauron.config import Settings, load_settings
from sauron.demo.samples import sample_photos
from sauron.demo.synth import ClipTruth, demo_clips

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "scripts" / "kafka-broker"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node KRaft broker on a loopback port, for the whole session.

    Set SAURON_TEST_BOOTSTRAP to use an already running cluster instead.
    """
    given = os.environ.get("SAURON_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    env = {
        **os.environ,
        "SAURON_KAFKA_DIR": str(tmp_path_factory.mktemp("kafka")),
        "SAURON_KAFKA_PORT": os.environ.get("SAURON_TEST_KAFKA_PORT", "19092"),
    }
    proc = subprocess.run(
        [str(BROKER), "start"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"could not start the Kafka broker:\n{proc.stderr[-3000:]}")
    bootstrap = proc.stdout.strip().splitlines()[-1]
    try:
        yield bootstrap
    finally:
        subprocess.run(
            [str(BROKER), "stop"], env=env, capture_output=True, timeout=120, check=False
        )


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix (and so unique consumer groups) per test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipTruth]:
    return demo_clips(tmp_path_factory.mktemp("clips"), frames=40)


@pytest.fixture(scope="session")
def watchlist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("watchlist")
    (root / "obama").mkdir()
    shutil.copyfile(sample_photos()["obama.jpg"], root / "obama" / "obama.jpg")
    return root


def clip_settings(clips: list[ClipTruth], watchlist: Path, **sections: Any) -> Settings:
    overrides: dict[str, Any] = {
        "cameras": [{"name": c.camera, "source": str(c.path), "realtime": False} for c in clips],
        "match": {"watchlist": str(watchlist)},
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_settings(None, overrides)
