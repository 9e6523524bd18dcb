"""Topic names and partitioning, shared by the embedded bus and Kafka."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from sauron.config import TopicsConfig

Partitioning = Literal["camera", "frame"]


@dataclass(frozen=True)
class Topics:
    """The topics of one deployment, named ``<prefix>.<stage>``."""

    frames: str
    detections: str
    annotated: str
    sightings: str
    watchlist: str
    deadletter: str

    @classmethod
    def from_config(cls, cfg: TopicsConfig) -> Topics:
        return cls(**{f: cfg.name(f) for f in cls.__dataclass_fields__})

    def all(self) -> list[str]:
        return [getattr(self, f) for f in self.__dataclass_fields__]


def camera_partition(camera: str, partitions: int) -> int:
    """The partition that holds a camera's frames in camera mode, and its annotated frames.

    A stable hash of the camera id (CRC-32), so any process, e.g. a viewer, can compute
    it and read one camera without reading the others.
    """
    return zlib.crc32(camera.encode()) % partitions


def frame_partition(camera: str, frame: int, partitions: int, mode: Partitioning) -> int:
    """Partition of a frame: the camera's own (ordered) or spread frame by frame."""
    base = camera_partition(camera, partitions)
    if mode == "camera":
        return base
    return (base + frame) % partitions
