"""Start-up over Kafka: cameras spread over the group, readiness of a real group."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from sauron.bus.admin import ensure_topics
from sauron.bus.ready import spread_cameras, wait_for_assignment
from sauron.bus.topics import Topics
from sauron.bus.worker import Output, StageWorker
from sauron.config import load_settings

CAMS = [f"cam{i}" for i in range(1, 7)]


def _per_member(placement: dict[str, int], members: dict[str, list[int]]) -> list[int]:
    return sorted(sum(p in parts for p in placement.values()) for parts in members.values())


@pytest.mark.parametrize(
    ("cameras", "workers", "expected"),
    [(3, 2, [1, 2]), (4, 2, [2, 2]), (5, 3, [1, 2, 2]), (6, 3, [2, 2, 2]), (1, 3, [0, 0, 1])],
)
def test_cameras_are_dealt_evenly_over_the_members(
    cameras: int, workers: int, expected: list[int]
) -> None:
    # 6 partitions dealt as cooperative-sticky does for `workers` members
    members = {f"m{k}": [p for p in range(6) if p % workers == k] for k in range(workers)}
    placement = spread_cameras(CAMS[:cameras], members, 6)
    assert sorted(placement) == CAMS[:cameras]
    assert len(set(placement.values())) == cameras, "each camera has a partition of its own"
    assert _per_member(placement, members) == expected
    assert spread_cameras(CAMS[:cameras], members, 6) == placement  # deterministic


def test_cameras_that_hash_together_are_split() -> None:
    """cam1 and cam2 share partition 4 of 6 by CRC-32: spread puts them apart."""
    from sauron.bus.topics import camera_partition

    assert camera_partition("cam1", 6) == camera_partition("cam2", 6)
    placement = spread_cameras(["cam1", "cam2"], {"a": [0, 1, 2], "b": [3, 4, 5]}, 6)
    assert placement["cam1"] != placement["cam2"]


def test_more_cameras_than_partitions_share_them() -> None:
    placement = spread_cameras(CAMS, {"a": [0], "b": [1]}, 2)
    assert Counter(placement.values()) == {0: 3, 1: 3}


def test_without_an_assignment_cameras_take_distinct_partitions() -> None:
    placement = spread_cameras(CAMS[:3], {}, 6)
    assert sorted(placement.values()) == [0, 2, 4]
    assert spread_cameras(CAMS[:3], {"idle": []}, 6) == placement
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        spread_cameras(CAMS, {}, 0)


@pytest.mark.kafka
def test_workers_report_ready_once_the_group_holds_every_partition(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Two members of a real group: each reports its first assignment, and the group is
    seen stable with both members holding all partitions between them."""
    settings = load_settings(
        None,
        {
            "bus": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
            "topics": {"prefix": topic_prefix, "partitions": 4},
        },
    )
    ensure_topics(settings)
    topics = Topics.from_config(settings.topics)

    def handler(value: bytes) -> list[Output]:
        return [Output(topics.annotated, value)]

    group = settings.topics.name("detect")
    workers = [
        StageWorker(settings, topic=topics.frames, group=group, handler=handler, name=f"w{i}")
        for i in range(2)
    ]
    reported: list[Any] = []
    for w in workers:
        w.on_ready.append(lambda w=w: reported.append(w.name))
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        assert all(w.ready.wait(60) for w in workers)
        got = wait_for_assignment(
            settings.bus, group, topics.frames, members=2, partitions=4, timeout=60
        )
        assert got is not None, "the group never held every partition"
        assert len(got.members) == 2
        assert got.assigned == {0, 1, 2, 3}
        assert sorted(len(p) for p in got.members.values()) == [2, 2]
        assert sorted(reported) == ["w0", "w1"], "on_ready runs once per worker"
    finally:
        for w in workers:
            w.stop_event.set()
        for t in threads:
            t.join(30)
    # after leaving, what each worker held is forgotten
    assert all(not w.partitions for w in workers)
