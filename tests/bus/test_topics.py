"""Topic names and partitioning by camera or by frame."""

from __future__ import annotations

import itertools
import zlib

import pytest

from sauron.bus.topics import Topics, camera_partition, frame_partition
from sauron.config import TopicsConfig

CAMERAS = [f"cam-{i}" for i in range(50)] + ["lobby", "gate.north", "X", "0"]


def test_topic_names_from_config() -> None:
    topics = Topics.from_config(TopicsConfig(prefix="site7"))
    assert topics.frames == "site7.frames"
    assert topics.detections == "site7.detections"
    assert topics.annotated == "site7.annotated"
    assert topics.sightings == "site7.sightings"
    assert topics.watchlist == "site7.watchlist"
    assert topics.deadletter == "site7.deadletter"
    assert topics.all() == [
        f"site7.{s}"
        for s in ("frames", "detections", "annotated", "sightings", "watchlist", "deadletter")
    ]


@pytest.mark.parametrize("partitions", [1, 2, 6, 7, 64])
def test_camera_partition_is_in_range_and_stable(partitions: int) -> None:
    for cam in CAMERAS:
        p = camera_partition(cam, partitions)
        assert 0 <= p < partitions
        assert camera_partition(cam, partitions) == p


def test_camera_partition_is_crc32_so_other_processes_agree() -> None:
    # Pinned values: any process (or language) computing CRC-32 finds the same partition.
    assert camera_partition("lobby", 6) == zlib.crc32(b"lobby") % 6
    assert [camera_partition(c, 6) for c in ("cam-0", "cam-1", "lobby")] == [
        zlib.crc32(c.encode()) % 6 for c in ("cam-0", "cam-1", "lobby")
    ]


def test_cameras_spread_over_partitions() -> None:
    used = {camera_partition(c, 6) for c in CAMERAS}
    assert len(used) == 6


@pytest.mark.parametrize("partitions", [1, 3, 6])
def test_camera_mode_keeps_a_camera_on_one_partition(partitions: int) -> None:
    for cam in CAMERAS[:10]:
        parts = {frame_partition(cam, n, partitions, "camera") for n in range(200)}
        assert parts == {camera_partition(cam, partitions)}


@pytest.mark.parametrize("partitions", [1, 2, 6, 13])
def test_frame_mode_spreads_consecutive_frames_over_all_partitions(partitions: int) -> None:
    for cam in CAMERAS[:10]:
        start = 1000
        window = [
            frame_partition(cam, n, partitions, "frame") for n in range(start, start + partitions)
        ]
        assert sorted(window) == list(range(partitions))
        # round robin: each next frame goes to the next partition
        for a, b in itertools.pairwise(window):
            assert b == (a + 1) % partitions


def test_frame_mode_starts_at_the_camera_partition() -> None:
    for cam in CAMERAS:
        assert frame_partition(cam, 0, 6, "frame") == camera_partition(cam, 6)
