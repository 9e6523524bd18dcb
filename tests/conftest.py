"""Shared fixtures: sample photos, one face model, fresh databases and a real Kafka broker."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sauron.demo.samples import sample_photos
from sauron.detect.models import FaceModel

BROKER = Path(__file__).resolve().parents[1] / "scripts" / "kafka-broker"

PG_ENV = "SAURON_TEST_DATABASE_URL"


def fresh_database(kind: str, tmp: Path) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind``; drop it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'sauron.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"no PostgreSQL: {PG_ENV} is unset (scripts/test starts one)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """{file name: path} of the face_recognition test photos (fetched once, then cached)."""
    return sample_photos()


@pytest.fixture(scope="session")
def face_model() -> FaceModel:
    """dlib HOG detection + dlib's reference embedder; loading models is slow, so share it."""
    return FaceModel(detector="dlib-hog", embedder="dlib")


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
