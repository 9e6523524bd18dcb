"""``sauron worker record`` over a real Kafka broker: a process of its own that stores the
annotated topic's sightings and alerts, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sauron import codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import make_producer, wait_until
from sauron.bus.topics import Topics
from sauron.config import StoreConfig, load_settings
from sauron.store.db import SightingFilter, Store

from .test_mqtt import face_result

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_record_worker_stores_what_the_pipeline_annotated(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, photos: dict[str, Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    settings = load_settings(
        None,
        {
            "bus": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "topics": {"prefix": topic_prefix, "partitions": 2},
        },
    )
    ensure_topics(settings)
    producer = make_producer(settings.bus)
    jpeg = photos["obama.jpg"].read_bytes()
    topic = Topics.from_config(settings.topics).annotated
    for n, person in enumerate(["obama", "obama", None]):
        result = face_result(jpeg, f"cam{n % 2}", n, person)
        producer.produce(topic, codec.encode_result(result), key=result.frame.camera)
    assert producer.flush(30) == 0

    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sauron.cli", "worker", "record", "--bootstrap",
         kafka_bootstrap, "--topic-prefix", topic_prefix, "--partitions", "2", "--db", url],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    store = None
    try:
        # the worker creates the tables; then this test reads them
        assert wait_until(lambda: "record worker" in (tmp_path / "worker.log").read_text(), 90)
        store = Store.open(StoreConfig(url=url, data_dir=tmp_path / "data"))

        def stored() -> int:
            assert store is not None
            return len(store.sightings(SightingFilter(), limit=100))

        assert wait_until(lambda: stored() == 3, 90), (tmp_path / "worker.log").read_text()
        alerts = store.alerts()
        assert sorted((a.person, a.camera) for a in alerts) == [
            ("obama", "cam0"),
            ("obama", "cam1"),
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
        if store is not None:
            store.close()
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text
