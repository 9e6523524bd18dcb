"""Kafka topic administration: the topics of a deployment with their partitions and
settings, created when missing (waiting until each new partition has a leader) or deleted.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from sauron import SauronError
from sauron.bus.client import MAX_MESSAGE_BYTES, check_reachable, client_config
from sauron.bus.topics import Topics
from sauron.config import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Partitions and configuration of every topic of the deployment."""
    t = settings.topics
    topics = Topics.from_config(t)
    common = {
        "min.insync.replicas": str(t.min_insync_replicas),
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }
    stream = {**common, "retention.ms": str(t.retention_ms)}
    week = str(7 * 86_400_000)
    return {
        topics.frames: (t.partitions, stream),
        topics.detections: (t.partitions, stream),
        topics.annotated: (t.partitions, stream),
        topics.sightings: (t.partitions, {**common, "retention.ms": week}),
        topics.watchlist: (1, {**common, "cleanup.policy": "compact"}),
        topics.deadletter: (1, {**common, "retention.ms": week}),
        # the ingest's camera reports (sauron.ingest.reports): the newest of each camera,
        # a camera no longer reported forgotten after a day
        t.name("cameras"): (
            1,
            {**common, "cleanup.policy": "compact,delete", "retention.ms": str(86_400_000)},
        ),
    }


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the missing topics; return topic -> partition count of all of them."""
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    wanted = topic_specs(settings)
    new = [
        NewTopic(
            name,
            num_partitions=parts,
            replication_factor=settings.topics.replication,
            config=conf,
        )
        for name, (parts, conf) in wanted.items()
        if name not in existing
    ]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=30).items():
            try:
                fut.result()
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise SauronError(f"cannot create topic {name}: {exc.args[0]}") from None
    if new:
        names = [t.topic for t in new]
        if not wait_for_leaders(admin, names, settings.bus.connect_timeout_s):
            log.warning("new topics %s have partitions without a leader yet", names)
    counts = check_reachable(settings.bus)
    return {name: counts[name] for name in wanted if name in counts}


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> bool:
    """Wait (bounded) until every partition of the topics has a leader to talk to;
    False if some still have none after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=timeout)
        parts = [
            p
            for n in names
            if n in md.topics and md.topics[n].error is None
            for p in md.topics[n].partitions.values()
        ]
        present = all(n in md.topics for n in names)
        if present and parts and all(p.leader >= 0 and p.error is None for p in parts):
            return True
        time.sleep(0.1)
    return False


def delete_topics(settings: Settings) -> list[str]:
    existing = check_reachable(settings.bus)
    admin = AdminClient(client_config(settings.bus))
    names = [n for n in topic_specs(settings) if n in existing]
    for name, fut in admin.delete_topics(names, operation_timeout=30).items() if names else []:
        fut.result()
        log.info("deleted topic %s", name)
    return names
