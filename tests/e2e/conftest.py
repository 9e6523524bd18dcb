"""Fixtures for end-to-end tests: a real Kafka broker for the session, demo clips."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sauron.config import Settings, load_settings
from sauron.demo.samples import sample_photos
from sauron.demo.synth import ClipTruth, demo_clips

BROKER = Path(__file__).resolve().parents[2] / "scripts" / "kafka-broker"


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
