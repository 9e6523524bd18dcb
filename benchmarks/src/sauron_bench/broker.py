"""A throw-away Kafka broker for one benchmark run, through ``scripts/kafka-broker``.

The broker gets a fresh run directory and a free loopback port pair; it is stopped by
the same script (which signals only the pid it recorded) when the run ends.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import tempfile
from pathlib import Path

import sauron
from sauron import SauronError
from sauron_bench.probes import port_free

log = logging.getLogger(__name__)


class BrokerError(SauronError):
    """The benchmark's own broker could not be started."""


def broker_script() -> Path:
    """``scripts/kafka-broker`` of the source checkout this package runs from."""
    script = Path(sauron.__file__).resolve().parents[2] / "scripts" / "kafka-broker"
    if not script.is_file():
        raise BrokerError(
            f"{script} not found: run from a source checkout, or give "
            "--bootstrap HOST:PORT of a running broker"
        )
    return script


def free_port_pair() -> int:
    """A port P with P and P+1 free on 127.0.0.1 (client and controller listeners)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000 and port_free(port + 1):
            return port
    raise BrokerError("no free pair of loopback ports found")


class LocalBroker:
    """``with LocalBroker() as b: b.bootstrap``: a fresh single-node broker."""

    def __init__(self) -> None:
        self.script = broker_script()
        self._tmp = tempfile.TemporaryDirectory(prefix="sauron-bench-kafka-")
        self.env = {
            **os.environ,
            "SAURON_KAFKA_DIR": self._tmp.name,
            "SAURON_KAFKA_PORT": str(free_port_pair()),
        }
        self.bootstrap = ""

    @property
    def pid(self) -> int | None:
        try:
            return int((Path(self._tmp.name) / "node-1" / "kafka.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> LocalBroker:
        log.info("starting a Kafka broker for the benchmark (scripts/kafka-broker start)")
        proc = subprocess.run(
            [str(self.script), "start"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            self.stop()
            raise BrokerError(
                f"scripts/kafka-broker start failed (Java 17 is needed; --no-kafka measures "
                f"the embedded bus alone):\n{proc.stderr[-2000:]}"
            )
        self.bootstrap = proc.stdout.strip().splitlines()[-1]
        return self

    def stop(self) -> None:
        subprocess.run(
            [str(self.script), "stop"], env=self.env, capture_output=True, timeout=120, check=False
        )
        self._tmp.cleanup()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def warm_up(bootstrap: str, seconds: float = 10.0, message_bytes: int = 48_000) -> int:
    """Push frame-sized messages through a throw-away topic and a consumer group for
    ``seconds``, so the broker's JVM has compiled its hot paths before anything is timed
    (a fresh broker is ~10 % slower for its first minute). Returns the messages moved."""
    import time
    import uuid

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-warmup-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 2}
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "auto.commit.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    payload = os.urandom(message_bytes)
    moved = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for _ in range(32):
                try:
                    producer.produce(topic, payload)
                except BufferError:
                    break
            producer.poll(0)
            moved += sum(1 for m in consumer.consume(64, timeout=0.05) if m.error() is None)
        producer.flush(10)
    finally:
        consumer.close()
        admin.delete_topics([topic])
    log.info("broker warmed up: %d messages of %d bytes in %.0f s", moved, message_bytes, seconds)
    return moved
