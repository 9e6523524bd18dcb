"""``sauron worker record`` over a real Kafka broker: a process of its own that stores the
annotated topic's sightings and alerts, and stops cleanly on SIGTERM; its group commits a
frame only once it is stored."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sauron import codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import make_producer, wait_until
from sauron.bus.topics import Topics
from sauron.config import StoreConfig, load_settings
from sauron.record.kafka_worker import RecordFeed
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
        # at its stop the worker finished every open appearance's clip, beside the database
        for a in alerts:
            clip = store.alert_clip(a.id)
            assert clip is not None and clip.parent.parent.parent == tmp_path / "media", a
            assert clip.read_bytes()[4:8] == b"ftyp"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
        if store is not None:
            store.close()
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text


class _Holding:
    """Stands in for the recorder: takes frames and reports them done only when told."""

    def __init__(self, finish_at_once: bool) -> None:
        self.finish_at_once = finish_at_once
        self.frames: list[int] = []
        self.waiting: list[Any] = []

    def add(self, result: Any, on_done: Any = None) -> None:
        self.frames.append(result.frame.number)
        if self.finish_at_once:
            on_done()
        else:
            self.waiting.append(on_done)

    def flush(self, timeout: float = 10.0) -> bool:
        return not self.waiting


def test_the_record_group_rereads_frames_the_recorder_had_not_finished(
    kafka_bootstrap: str, tmp_path: Path, photos: dict[str, Path]
) -> None:
    """A worker that dies with frames still queued for its recorder loses none: the
    record group commits a frame's offset only once the recorder is done with it."""
    settings = load_settings(
        None,
        {
            "bus": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "topics": {"prefix": f"r{uuid.uuid4().hex[:8]}", "partitions": 1},
        },
    )
    ensure_topics(settings)
    producer = make_producer(settings.bus)
    jpeg = photos["obama2.jpg"].read_bytes()
    for n in range(6):
        result = face_result(jpeg, "lobby", n, None)
        producer.produce(Topics.from_config(settings.topics).annotated, codec.encode_result(result))
    assert producer.flush(30) == 0

    def run_feed(recorder: _Holding, until: Any, then: Any = None) -> None:
        feed = RecordFeed(settings, recorder).start()  # type: ignore[arg-type]
        try:
            assert wait_until(until, 60), recorder.frames
            if then is not None:
                then()
            time.sleep(2.5)  # two auto-commit intervals: whatever is stored gets committed
        finally:
            feed.stop()
            feed.join(30)

    def store_two() -> None:
        for done in first.waiting[:2]:
            done()

    first = _Holding(finish_at_once=False)
    # frames 0 and 1 stored, 2-5 still queued when the server dies
    run_feed(first, lambda: len(first.frames) == 6, store_two)

    second = _Holding(finish_at_once=True)
    run_feed(second, lambda: len(second.frames) >= 4)
    assert second.frames == [2, 3, 4, 5], "the unfinished frames, read again; no others"

    third = _Holding(finish_at_once=True)
    feed = RecordFeed(settings, third).start()  # type: ignore[arg-type]
    time.sleep(4)
    feed.stop()
    feed.join(30)
    assert third.frames == [], "everything finished was committed"
