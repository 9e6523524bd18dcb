"""Start-up over Kafka: wait until a consumer group can take frames, then place cameras.

Two causes of a start-up backlog are handled here (docs/kafka.md, "Start-up"):

- cameras that send before the detect workers have joined the group and hold every
  partition: :func:`wait_for_assignment` waits (bounded) until the group is stable, has
  the expected members and every partition of the topic is assigned;
- cameras whose ids hash to the same partition, or to partitions of the same worker:
  :func:`spread_cameras` gives each camera a partition of its own, dealt over the members
  of the group so each worker gets as many cameras as whole cameras allow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from sauron.bus.client import client_config
from sauron.config import BusConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupAssignment:
    """Which member of a group holds which partitions of one topic."""

    group: str
    topic: str
    members: dict[str, tuple[int, ...]]  # member id -> its partitions, sorted

    @property
    def assigned(self) -> set[int]:
        return {p for parts in self.members.values() for p in parts}


def describe_assignment(admin: AdminClient, group: str, topic: str) -> GroupAssignment | None:
    """The group's current assignment on ``topic``, or None while it is rebalancing."""
    desc = admin.describe_consumer_groups([group])[group].result(timeout=5)
    if desc.state != ConsumerGroupState.STABLE:
        return None
    members = {
        m.member_id: tuple(
            sorted(
                tp.partition
                for tp in (m.assignment.topic_partitions if m.assignment else [])
                if tp.topic == topic
            )
        )
        for m in desc.members
    }
    return GroupAssignment(group, topic, members)


def wait_for_assignment(
    bus: BusConfig,
    group: str,
    topic: str,
    *,
    members: int,
    partitions: int,
    timeout: float,
    stop: threading.Event | None = None,
) -> GroupAssignment | None:
    """Wait until ``group`` is stable with ``members`` members holding all ``partitions``
    of ``topic`` between them; the assignment, or None after ``timeout`` seconds or once
    ``stop`` is set."""
    admin = AdminClient(client_config(bus))
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = describe_assignment(admin, group, topic)
        except KafkaException as exc:  # the group may not exist yet
            log.debug("group %s not described yet: %s", group, exc)
            got = None
        if got is not None and len(got.members) >= members and len(got.assigned) >= partitions:
            return got
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            return None
        time.sleep(0.1)


def spread_cameras(
    cameras: Sequence[str], members: Mapping[str, Sequence[int]], partitions: int
) -> dict[str, int]:
    """Camera -> frames partition: distinct partitions while there are enough, dealt
    round-robin over the members (the member with the fewest cameras next), so that 3
    cameras over 2 workers go 2 + 1 and 4 over 2 go 2 + 2, whatever their ids hash to.

    With no assignment known (``members`` empty) cameras take partitions 0, 1, 2, ...
    spread over the whole range. Deterministic for the same cameras and assignment.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    pools = [list(parts) for _, parts in sorted(members.items()) if parts]
    if not pools:
        step = max(1, partitions // max(1, len(cameras)))
        return {cam: (i * step) % partitions for i, cam in enumerate(cameras)}
    load = [0] * len(pools)
    used: list[set[int]] = [set() for _ in pools]
    out: dict[str, int] = {}
    for cam in cameras:
        k = min(range(len(pools)), key=lambda i: (load[i], -len(pools[i]), i))
        free = [p for p in pools[k] if p not in used[k]]
        # more cameras than this member's partitions: share the least used one
        part = free[0] if free else pools[k][load[k] % len(pools[k])]
        used[k].add(part)
        load[k] += 1
        out[cam] = part
    return out
