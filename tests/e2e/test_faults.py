"""Fault tests on real brokers on loopback: nothing is lost when workers or brokers fail.

Every test feeds frames at a steady rate from a live-camera producer into the pipeline
(detect workers as real processes, a match worker in a thread, real models), injects one
fault mid-stream and then waits, bounded, for every frame to come out of the annotated
topic. What each test measured (frames in and out, duplicates, time to recover) is logged
and, with ``SAURON_FAULT_REPORT=FILE``, appended to that file as JSON lines: the figures
in docs/reliability.md come from there.

Time to recover (``recover_s``): from the fault until every frame produced up to one second
after it has come out, i.e. until the partitions hit by the fault flow again (for the
broker restart: from the broker being back up). ``delay_s``: how long frames took from the
camera to the annotated topic, before the fault (median) and at worst.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from sauron import codec
from sauron.bus.admin import ensure_topics
from sauron.bus.client import end_offsets, make_consumer, wait_until
from sauron.bus.offsets import OffsetTracker
from sauron.bus.producer import FrameProducer
from sauron.bus.tail import TopicTail
from sauron.bus.topics import Topics
from sauron.bus.worker import StageWorker
from sauron.config import CameraConfig, Settings, load_settings
from sauron.demo.synth import ClipTruth
from sauron.detect.kafka_worker import build_detect_worker
from sauron.ingest.producer import camera_frames
from sauron.match.kafka_worker import build_match_worker, topic_namer
from sauron.metrics import Metrics
from sauron.types import Frame

from .conftest import BROKER

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WORKER_ENV = {
    "SAURON_BUS__SESSION_TIMEOUT_S": "6",
    "SAURON_DETECT__BATCH_SIZE": "4",
    "SAURON_DETECT__TRACKING": "false",
    "SAURON_LOG_LEVEL": "INFO",
}
CAMERA = "cam0"


# ---------------------------------------------------------------------------- helpers


def report(record: dict[str, Any]) -> None:
    log.warning("fault test figures: %s", json.dumps(record))
    path = os.environ.get("SAURON_FAULT_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


class Cluster:
    """A private KRaft cluster (scripts/kafka-broker) in its own run dir and ports."""

    def __init__(self, run_dir: Path, port: int, nodes: int) -> None:
        self.nodes = nodes
        self.env = {
            **os.environ,
            "SAURON_KAFKA_DIR": str(run_dir),
            "SAURON_KAFKA_PORT": str(port),
            "SAURON_KAFKA_HEAP": os.environ.get("SAURON_TEST_KAFKA_HEAP", "384m"),
        }

    def _run(self, *args: str, timeout: float = 180) -> str:
        proc = subprocess.run(
            [str(BROKER), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"kafka-broker {' '.join(args)}:\n{proc.stderr[-3000:]}"
        return proc.stdout.strip()

    def start(self) -> str:
        return self._run("start", "--nodes", str(self.nodes)).splitlines()[-1]

    def stop_node(self, node: int, *, kill: bool = False) -> None:
        self._run("stop-node", str(node), *(["--kill"] if kill else []))

    def start_node(self, node: int) -> None:
        self._run("start-node", str(node))

    def stop(self) -> None:
        subprocess.run(
            [str(BROKER), "stop"], env=self.env, capture_output=True, timeout=120, check=False
        )


def own_cluster(tmp: Path, offset: int, nodes: int) -> Iterator[tuple[Cluster, str]]:
    base = int(os.environ.get("SAURON_TEST_FAULT_PORT", "19192"))
    cluster = Cluster(tmp, base + offset, nodes)
    try:
        yield cluster, cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def restartable_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    yield from own_cluster(tmp_path_factory.mktemp("kafka-restart"), 0, 1)


@pytest.fixture
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    yield from own_cluster(tmp_path_factory.mktemp("kafka-3"), 100, 3)


@pytest.fixture(scope="module")
def jpegs(clips: list[ClipTruth]) -> list[bytes]:
    """Real camera frames (320 px wide) to replay."""
    out = []
    for clip in clips:
        cam = CameraConfig(name=clip.camera, source=str(clip.path), realtime=False, max_width=320)
        out += [f.jpeg for f in camera_frames(cam)]
    return out


def settings_for(bootstrap: str, prefix: str, **sections: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {
        "bus": {"type": "kafka", "bootstrap_servers": bootstrap, "session_timeout_s": 6},
        "topics": {"prefix": prefix, "partitions": 4, "partitioning": "frame"},
        "detect": {"tracking": False, "batch_size": 4},
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_settings(None, overrides)


def worker_args(settings: Settings) -> list[str]:
    args = [
        "--bootstrap",
        settings.bus.bootstrap_servers,
        "--topic-prefix",
        settings.topics.prefix,
        "--partitions",
        str(settings.topics.partitions),
        "--partitioning",
        settings.topics.partitioning,
    ]
    return args + (["--exactly-once"] if settings.bus.exactly_once else [])


class Workers:
    """Detect workers as separate processes (``sauron worker detect``), by pid."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        i = len(self.procs)
        env = {
            **os.environ,
            **WORKER_ENV,
            "SAURON_MATCH__IN_DETECT": str(self.settings.match.in_detect).lower(),
        }
        with open(self.log_dir / f"detect-{i}.log", "wb") as errs:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sauron.cli", "worker", "detect",
                 *worker_args(self.settings), *extra],
                stdout=subprocess.DEVNULL, stderr=errs, env=env,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:]
            for f in sorted(self.log_dir.glob("detect-*.log"))
        )


def group_members(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(10)
        return len(desc.members)
    except Exception:  # the group may not exist yet, or a broker may be down
        return -1


def committed_total(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return sum(tp.offset for tp in res.result(10).topic_partitions or [] if tp.offset >= 0)


class Collector:
    """Reads the annotated and sightings topics (read_committed) and counts every frame."""

    def __init__(self, settings: Settings) -> None:
        topics = Topics.from_config(settings.topics)
        self.lock = threading.Lock()
        self.annotated: Counter[int] = Counter()
        self.faces: dict[int, int] = {}
        self.sightings: Counter[int] = Counter()
        self.arrived: dict[int, float] = {}
        self.tails = [
            TopicTail(settings.bus, topics.annotated, self._on_annotated),
            TopicTail(settings.bus, topics.sightings, self._on_sighting),
        ]

    def _on_annotated(self, msg: Message) -> None:
        result = codec.decode_result(msg.value() or b"")
        with self.lock:
            n = result.frame.number
            self.annotated[n] += 1
            self.faces[n] = len(result.detections)
            self.arrived.setdefault(n, time.monotonic())

    def _on_sighting(self, msg: Message) -> None:
        event = codec.decode_sighting(msg.value() or b"")
        with self.lock:
            self.sightings[event.frame] += 1

    def __enter__(self) -> Collector:
        for t in self.tails:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self.tails:
            t.stop()
        for t in self.tails:
            t.join(10)

    @property
    def unique(self) -> int:
        with self.lock:
            return len(self.annotated)

    def seen_all(self, numbers: range | list[int]) -> bool:
        with self.lock:
            return all(n in self.annotated for n in numbers)

    def duplicates(self) -> int:
        with self.lock:
            return sum(c - 1 for c in self.annotated.values())

    def sighting_duplicates(self) -> int:
        """Sightings beyond one per face of each frame (faces counted from its result)."""
        with self.lock:
            return sum(max(0, c - self.faces.get(n, 0)) for n, c in self.sightings.items())


class Feeder(threading.Thread):
    """A live camera: ``n`` frames at ``fps``, through the frame producer (never blocks)."""

    def __init__(self, settings: Settings, jpegs: list[bytes], n: int, fps: float) -> None:
        super().__init__(daemon=True, name="feeder")
        counts = ensure_topics(settings)
        frames = Topics.from_config(settings.topics).frames
        self.producer = FrameProducer(settings, counts[frames])
        self.jpegs = jpegs
        self.n = n
        self.fps = fps
        self.produced = 0
        self.produced_at: list[float] = []
        self.left = -1

    def run(self) -> None:
        t0 = time.monotonic()
        for i in range(self.n):
            self.producer.publish(Frame(CAMERA, i, time.time(), self.jpegs[i % len(self.jpegs)]))
            self.produced_at.append(time.monotonic())
            self.produced = i + 1
            time.sleep(max(0.0, t0 + (i + 1) / self.fps - time.monotonic()))
        self.left = self.producer.flush(120)


Matcher = tuple[StageWorker, threading.Thread, Any] | None


def start_matcher(settings: Settings) -> Matcher:
    """A match worker (a thread) when the detect workers do not match (``match.in_detect``)."""
    if settings.match.in_detect:
        return None
    worker, tail = build_match_worker(settings)
    thread = threading.Thread(target=worker.run, name="match", daemon=True)
    thread.start()
    return worker, thread, tail


def stop_matcher(matcher: Matcher) -> None:
    if matcher is None:
        return
    worker, thread, tail = matcher
    worker.stop_event.set()
    thread.join(60)
    tail.stop()


def wait_for(pred: Callable[[], bool], timeout: float, what: str, diag: Callable[[], str]) -> None:
    if not wait_until(pred, timeout, 0.1):
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diag()}")


def timing(feeder: Feeder, out: Collector, t_fault: float, t_back: float) -> dict[str, Any]:
    """recover_s and delay_s (see the module docstring) from production and arrival times."""
    made, came = feeder.produced_at, out.arrived
    window = [n for n, t in enumerate(made) if t < t_back + 1.0]
    delays = [came[n] - t for n, t in enumerate(made) if n in came]
    before = [came[n] - t for n, t in enumerate(made) if t < t_fault and n in came]
    return {
        "recover_s": round(max(came[n] for n in window) - t_back, 2),
        "delay_s": {
            "median_before": round(statistics.median(before), 2) if before else None,
            "max": round(max(delays), 2),
        },
    }


# ---------------------------------------------------------------------------- tests


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "mode", ["at-least-once", "exactly-once", "at-least-once, separate match worker"]
)
def test_kill9_detect_worker_mid_stream(
    mode: str, kafka_bootstrap: str, topic_prefix: str, jpegs: list[bytes], tmp_path: Path
) -> None:
    """kill -9 of one of two detect workers: its partitions move, every frame comes out.
    The detect workers name the faces themselves (the default), or a match worker does."""
    eos = mode == "exactly-once"
    settings = settings_for(
        kafka_bootstrap,
        topic_prefix,
        bus={"exactly_once": eos},
        match={"in_detect": "separate" not in mode},
    )
    ensure_topics(settings)
    n, fps = 240, 16.0
    workers = Workers(settings, tmp_path)
    victim = workers.start()
    workers.start()
    matcher = start_matcher(settings)
    group = settings.topics.name("detect")
    try:
        wait_for(lambda: group_members(kafka_bootstrap, group) == 2, 90, "2 detect workers",
                 workers.log_tail)  # fmt: skip
        with Collector(settings) as out:
            feeder = Feeder(settings, jpegs, n, fps)
            t_start = time.monotonic()
            feeder.start()
            wait_for(lambda: out.unique >= n // 3, 120, "a third of the frames", workers.log_tail)
            os.kill(victim.pid, signal.SIGKILL)
            t_kill, before = time.monotonic(), feeder.produced
            victim.wait(10)
            wait_for(lambda: out.seen_all(range(before)), 120, "frames produced before the kill",
                     workers.log_tail)  # fmt: skip
            wait_for(lambda: out.seen_all(range(n)), 120, "every frame", workers.log_tail)
            feeder.join(130)
            time.sleep(2)  # late duplicates, if any, arrive now
            figures = {
                "test": "kill -9 detect worker", "mode": mode, "frames_in": feeder.produced,
                "acked": feeder.producer.stats.acked, "frames_out": out.unique,
                "duplicates": out.duplicates(), "sighting_duplicates": out.sighting_duplicates(),
                "frame_before_kill": before, **timing(feeder, out, t_kill, t_kill),
                "wall_s": round(time.monotonic() - t_start, 1),
            }  # fmt: skip
    finally:
        workers.stop_all()
        stop_matcher(matcher)
    report(figures)
    assert feeder.left == 0 and feeder.producer.stats.acked == n
    assert figures["frames_out"] == n, "every frame comes out"
    assert workers.procs[1].returncode == 0, "the surviving worker stops cleanly on SIGTERM"
    delivery = "exactly-once" if eos else "at-least-once"
    assert f"({delivery})" in workers.log_tail(), "the workers ran in the mode under test"
    detections = sum(
        end_offsets(settings.bus, Topics.from_config(settings.topics).detections).values()
    )
    if settings.match.in_detect:
        assert detections == 0, "the detect workers named the faces themselves"
    else:
        assert detections >= n, "the detect workers left the naming to the match worker"
    if eos:
        assert figures["duplicates"] == 0, "exactly-once: no annotated frame twice"
        assert figures["sighting_duplicates"] == 0, "exactly-once: no sighting twice"
    else:
        # At-least-once may repeat what the killed worker did after its last commit: at most
        # about one commit interval of its frames, never more than it could have handled.
        assert figures["duplicates"] <= before


@pytest.mark.timeout(240)
def test_worker_with_several_processes_replaces_a_killed_one(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """``sauron worker detect --processes 2`` keeps two members in the group: a child
    killed with SIGKILL is logged and replaced; SIGTERM still ends it cleanly."""
    import psutil

    settings = settings_for(kafka_bootstrap, topic_prefix)
    ensure_topics(settings)
    workers = Workers(settings, tmp_path)
    parent = workers.start("--processes", "2")
    group = settings.topics.name("detect")

    def children() -> list[int]:
        return [c.pid for c in psutil.Process(parent.pid).children() if c.is_running()
                and any("spawn_main" in a for a in c.cmdline())]  # fmt: skip

    try:
        wait_for(lambda: group_members(kafka_bootstrap, group) == 2, 120, "2 members",
                 workers.log_tail)  # fmt: skip
        first = children()
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: "died: killed by signal 9 (SIGKILL)" in workers.log_tail(), 20,
                 "the death logged", workers.log_tail)  # fmt: skip
        wait_for(lambda: len(set(children()) - set(first)) == 1, 30, "a replacement",
                 workers.log_tail)  # fmt: skip
        wait_for(lambda: group_members(kafka_bootstrap, group) == 2, 120,
                 "2 members again", workers.log_tail)  # fmt: skip
    finally:
        workers.stop_all()
    assert parent.returncode == 0, workers.log_tail()
    assert "Traceback" not in workers.log_tail()


@pytest.mark.timeout(300)
def test_a_worker_asked_to_stop_while_its_broker_hangs_stops(
    restartable_broker: tuple[Cluster, str], jpegs: list[bytes], tmp_path: Path
) -> None:
    """SIGTERM to a detect worker, with frames in flight, whose only broker hangs (the
    process frozen with SIGSTOP: connections open, no answers): it cannot leave its group
    cleanly, yet it stops within its close timeout, saying so."""
    cluster, bootstrap = restartable_broker
    settings = settings_for(bootstrap, f"g{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    workers = Workers(settings, tmp_path)
    worker = workers.start()
    pid = int((Path(cluster.env["SAURON_KAFKA_DIR"]) / "node-1" / "kafka.pid").read_text())
    try:
        wait_for(lambda: group_members(bootstrap, settings.topics.name("detect")) == 1, 90,
                 "the detect worker", workers.log_tail)  # fmt: skip
        with Collector(settings) as out:
            feeder = Feeder(settings, jpegs, 40, 16.0)
            feeder.start()
            wait_for(lambda: out.unique >= 10, 120, "frames flowing", workers.log_tail)
            os.kill(pid, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                worker.send_signal(signal.SIGTERM)
                rc = worker.wait(120)
                took = time.monotonic() - t0
            finally:
                os.kill(pid, signal.SIGCONT)
            feeder.join(60)
    finally:
        workers.stop_all()
    report({"test": "SIGTERM with the broker frozen", "stop_s": round(took, 1)})
    assert rc == 0, workers.log_tail()
    assert "stopped after" in workers.log_tail()


@pytest.mark.timeout(300)
def test_broker_stopped_and_restarted_mid_stream(
    restartable_broker: tuple[Cluster, str], jpegs: list[bytes], tmp_path: Path
) -> None:
    """The only broker stops for a while and comes back: everyone resumes on their own."""
    cluster, bootstrap = restartable_broker
    settings = settings_for(bootstrap, f"r{uuid.uuid4().hex[:8]}")
    ensure_topics(settings)
    n, fps, down_s = 200, 16.0, 5.0
    workers = Workers(settings, tmp_path)
    worker = workers.start()
    matcher = start_matcher(settings)
    try:
        wait_for(lambda: group_members(bootstrap, settings.topics.name("detect")) == 1, 90,
                 "the detect worker", workers.log_tail)  # fmt: skip
        with Collector(settings) as out:
            feeder = Feeder(settings, jpegs, n, fps)
            t_start = time.monotonic()
            feeder.start()
            wait_for(lambda: out.unique >= n // 4, 120, "a quarter of the frames",
                     workers.log_tail)  # fmt: skip
            t_stop, before = time.monotonic(), feeder.produced
            cluster.stop_node(1)
            stopped = time.monotonic()
            time.sleep(down_s)
            during = feeder.produced - before
            cluster.start_node(1)
            t_up = time.monotonic()
            wait_for(lambda: out.seen_all(range(before)), 120, "frames produced before the stop",
                     workers.log_tail)  # fmt: skip
            wait_for(lambda: out.seen_all(range(n)), 150, "every frame", workers.log_tail)
            feeder.join(130)
            time.sleep(1)
            figures = {
                "test": "broker stop/restart", "mode": "at-least-once",
                "frames_in": feeder.produced, "acked": feeder.producer.stats.acked,
                "dropped": feeder.producer.stats.dropped_total, "frames_out": out.unique,
                "duplicates": out.duplicates(), "produced_while_down": during,
                "broker_down_s": round(t_up - t_stop, 1), "stop_took_s": round(stopped - t_stop, 1),
                **timing(feeder, out, t_stop, t_up), "wall_s": round(time.monotonic() - t_start, 1),
            }  # fmt: skip
        assert worker.poll() is None, "the worker must ride out the outage, not exit"
    finally:
        workers.stop_all()
        stop_matcher(matcher)
    report(figures)
    assert during > 0, "frames were produced while the broker was down"
    assert figures["dropped"] == 0 and feeder.left == 0, "frames produced while down are kept"
    assert figures["frames_out"] == n, "nothing produced before (or during) the stop is lost"


@pytest.mark.timeout(360)
def test_three_brokers_kill_frames_leader(
    three_brokers: tuple[Cluster, str], jpegs: list[bytes], tmp_path: Path
) -> None:
    """RF 3, min ISR 2: kill -9 the broker leading the frames topic; nothing is lost."""
    cluster, bootstrap = three_brokers
    settings = settings_for(
        bootstrap,
        f"l{uuid.uuid4().hex[:8]}",
        topics={"partitions": 3, "replication": 3, "min_insync_replicas": 2},
    )
    ensure_topics(settings)
    frames = Topics.from_config(settings.topics).frames
    n, fps = 200, 16.0
    workers = Workers(settings, tmp_path)
    workers.start()
    workers.start()
    matcher = start_matcher(settings)
    try:
        wait_for(lambda: group_members(bootstrap, settings.topics.name("detect")) == 2, 120,
                 "2 detect workers", workers.log_tail)  # fmt: skip
        with Collector(settings) as out:
            feeder = Feeder(settings, jpegs, n, fps)
            t_start = time.monotonic()
            feeder.start()
            wait_for(lambda: out.unique >= n // 3, 150, "a third of the frames", workers.log_tail)
            md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(frames, timeout=10)
            leaders = Counter(p.leader for p in md.topics[frames].partitions.values())
            leader = leaders.most_common(1)[0][0]
            t_kill, before = time.monotonic(), feeder.produced
            cluster.stop_node(leader, kill=True)
            wait_for(lambda: out.seen_all(range(before)), 150, "frames produced before the kill",
                     workers.log_tail)  # fmt: skip
            wait_for(lambda: out.seen_all(range(n)), 150, "every frame", workers.log_tail)
            feeder.join(130)
            time.sleep(1)
            md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(frames, timeout=10)
            figures = {
                "test": "3 brokers, kill -9 frames leader", "mode": "at-least-once",
                "killed_node": leader, "led_partitions": leaders[leader],
                "new_leaders": sorted({p.leader for p in md.topics[frames].partitions.values()}),
                "frames_in": feeder.produced, "acked": feeder.producer.stats.acked,
                "dropped": feeder.producer.stats.dropped_total, "frames_out": out.unique,
                "duplicates": out.duplicates(), "frame_before_kill": before,
                **timing(feeder, out, t_kill, t_kill),
                "wall_s": round(time.monotonic() - t_start, 1),
            }  # fmt: skip
        assert all(p.poll() is None for p in workers.procs), "workers carry on"
    finally:
        workers.stop_all()
        stop_matcher(matcher)
    report(figures)
    assert leader not in figures["new_leaders"], "the partitions moved to live brokers"
    assert figures["dropped"] == 0 and feeder.left == 0
    assert figures["frames_out"] == n, "nothing is lost"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(240)
def test_worker_restart_resumes_from_committed_offsets(
    kafka_bootstrap: str, topic_prefix: str, jpegs: list[bytes], tmp_path: Path
) -> None:
    """SIGTERM: batch finished, offsets committed, group left; a restart neither redoes
    nor skips anything. Also checks /healthz, /metrics and ``sauron status`` on it.
    (With a separate match stage, so the detections topic holds what the worker did.)"""
    settings = settings_for(kafka_bootstrap, topic_prefix, match={"in_detect": False})
    topics = Topics.from_config(settings.topics)
    group = settings.topics.name("detect")
    n1, n2 = 60, 40
    feeder = Feeder(settings, jpegs, n1, 200.0)
    feeder.run()
    assert feeder.left == 0
    workers = Workers(settings, tmp_path)
    port = _free_port()
    first = workers.start("--metrics-port", str(port))
    try:
        wait_for(lambda: committed_total(kafka_bootstrap, group) == n1, 120,
                 "the first worker to commit every frame", workers.log_tail)  # fmt: skip
        code, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert code == 200, body
        health = json.loads(body)["components"]["detect"]
        assert health["live"] and health["assigned"] == 4
        _, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert f'sauron_frames_out_total{{stage="detect"}} {float(n1)}' in text.decode()
        status = subprocess.run(
            [sys.executable, "-m", "sauron.cli", "status", *worker_args(settings)[:4],
             "--interval", "1", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "SAURON_MATCH__IN_DETECT": "false"},
        )  # fmt: skip
        assert status.returncode == 0, status.stderr[-2000:]
        stages = {s["stage"]: s for s in json.loads(status.stdout)["stages"]}
        assert stages["detect"]["workers"] == 1 and stages["detect"]["lag"] == 0
        assert stages["match"]["workers"] == 0 and stages["match"]["lag"] == n1

        t_term = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, workers.log_tail()
        exit_s = time.monotonic() - t_term
        members = group_members(kafka_bootstrap, group)
        left_s = time.monotonic() - t_term
        assert members == 0, "a stopped worker leaves its group at once"
        assert left_s < settings.bus.session_timeout_s, "not by a session timeout"

        more = FrameProducer(settings, settings.topics.partitions)
        for i in range(n1, n1 + n2):
            more.publish(Frame(CAMERA, i, time.time(), jpegs[i % len(jpegs)]))
        assert more.flush(30) == 0
        port2 = _free_port()
        workers.start("--metrics-port", str(port2))
        wait_for(lambda: committed_total(kafka_bootstrap, group) == n1 + n2, 120,
                 "the restarted worker to commit the new frames", workers.log_tail)  # fmt: skip
        _, text = _get(f"http://127.0.0.1:{port2}/metrics")
    finally:
        workers.stop_all()
    done = Counter(
        codec.decode_detections(m.value())[0].number
        for m in _read_all(settings, topics.detections, n1 + n2)
    )
    report({
        "test": "worker restart, same group", "mode": "at-least-once", "frames_in": n1 + n2,
        "frames_out": len(done), "duplicates": sum(done.values()) - len(done),
        "first_run": n1, "second_run_in": n2, "sigterm_exit_s": round(exit_s, 2),
    })  # fmt: skip
    assert sorted(done) == list(range(n1 + n2)), "nothing skipped"
    assert max(done.values()) == 1, "nothing processed twice"
    assert f'sauron_frames_in_total{{stage="detect"}} {float(n2)}' in text.decode(), (
        "the restarted worker read only the frames after the committed offsets"
    )


def _read_all(settings: Settings, topic: str, expect: int, timeout: float = 60) -> list[Message]:
    got: list[Message] = []
    lock = threading.Lock()

    def on_msg(msg: Message) -> None:
        with lock:
            got.append(msg)

    tail = TopicTail(settings.bus, topic, on_msg)
    tail.start()
    wait_until(lambda: len(got) >= expect, timeout)
    time.sleep(1)  # anything beyond what was expected (duplicates) arrives too
    tail.stop()
    tail.join(10)
    return got


# ---------------------------------------------------------------------------- delivery pieces


@pytest.mark.kafka
def test_frame_producer_delivers_everything_when_the_broker_is_up(
    kafka_bootstrap: str, topic_prefix: str, jpegs: list[bytes]
) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    counts = ensure_topics(s)
    producer = FrameProducer(s, counts[Topics.from_config(s.topics).frames])
    for i in range(50):
        assert producer.publish(Frame("cam", i, time.time(), jpegs[0]))
    assert producer.flush(30) == 0
    assert producer.stats.acked == 50 and producer.stats.dropped_total == 0


@pytest.mark.kafka
def test_offset_tracker_commits_only_contiguous_delivered_inputs(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    s = settings_for(kafka_bootstrap, topic_prefix)
    ensure_topics(s)
    topic = Topics.from_config(s.topics).frames
    consumer = make_consumer(s.bus, f"{topic_prefix}.tracker")
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        tracker = OffsetTracker(consumer)
        done0 = tracker.add(topic, 0, 0, 2)
        done1 = tracker.add(topic, 0, 1, 1)
        tracker.add(topic, 0, 2, 0)  # an input with no output (dropped)
        done3 = tracker.add(topic, 0, 3, 1)

        def committed() -> int:
            with contextlib.suppress(KafkaException):  # nothing stored yet: nothing to commit
                consumer.commit(asynchronous=False)
            return int(consumer.committed([TopicPartition(topic, 0)], timeout=10)[0].offset)

        done1()
        done3()
        done0()
        assert committed() < 0, "input 0 has an undelivered output: nothing may be committed"
        done0()
        assert committed() == 4, "0..3 all delivered: the next offset to read is 4"
        assert tracker.in_flight == 0
    finally:
        consumer.close()


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_stale_frames_are_dropped_and_counted_not_detected(
    kafka_bootstrap: str, topic_prefix: str, jpegs: list[bytes]
) -> None:
    """Stay-live policy: with detect.max_frame_age_s, a worker that fell behind drops the
    frames older than that (counted, committed) and detects the fresh ones."""
    s = settings_for(kafka_bootstrap, topic_prefix, detect={"max_frame_age_s": 5.0})
    counts = ensure_topics(s)
    topics = Topics.from_config(s.topics)
    producer = FrameProducer(s, counts[topics.frames])
    now = time.time()
    for i in range(20):  # a backlog: 12 frames a minute old, then 8 fresh ones
        producer.publish(Frame("cam", i, now - 60 if i < 12 else now, jpegs[0]))
    assert producer.flush(30) == 0
    metrics = Metrics()
    worker = build_detect_worker(s, namer=topic_namer, metrics=metrics)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: worker.stats.dropped + worker.stats.processed >= 20, 60)
    finally:
        worker.stop_event.set()
        thread.join(30)
    assert worker.stats.dropped == 12 and worker.stats.processed == 8
    assert metrics.value("sauron_frames_dropped_total", stage="detect", reason="stale") == 12
    assert worker.stats.dead_letters == 0
    group_consumer = make_consumer(s.bus, s.topics.name("detect"))
    try:
        parts = [TopicPartition(topics.frames, p) for p in range(counts[topics.frames])]
        done = sum(tp.offset for tp in group_consumer.committed(parts, timeout=10) if tp.offset > 0)
    finally:
        group_consumer.close()
    assert done == 20, "dropped frames are committed too: a restart does not redo them"
