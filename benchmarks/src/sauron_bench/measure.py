"""Measuring a benchmark run: frame feeding, per-frame records, CPU and memory, percentiles.

A run feeds frames to a pipeline with a :class:`Replayer` (one thread per camera, paced
like a live camera or as fast as the sink takes them), records one :class:`Record` per
annotated frame that comes out, and samples the CPU time and resident memory of every
process taking part with a :class:`ResourceMonitor`. :func:`summarize` turns that into a
:class:`RunResult`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sauron.types import Frame
from sauron_bench.workload import Workload

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "embed", "match", "draw")


@dataclass(frozen=True)
class Record:
    """One annotated frame as it became available."""

    camera: str
    number: int
    captured_at: float
    available_at: float
    timings_ms: dict[str, float]
    names: tuple[str | None, ...] = ()

    @property
    def latency_ms(self) -> float:
        return (self.available_at - self.captured_at) * 1e3


class Collector:
    """Thread-safe store of records; ``wait_for`` blocks until a count is reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self.records)

    def wait_for(self, count: int, timeout: float, min_number: int = 0) -> bool:
        """Wait until ``count`` records of frames numbered ``min_number`` or more are in."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(r.number >= min_number for r in self.records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def count(self, min_number: int = 0) -> int:
        """Records of frames numbered ``min_number`` or more."""
        with self._lock:
            return sum(r.number >= min_number for r in self.records)

    def wait_settled(
        self, count: int, timeout: float, quiet_s: float = 5.0, min_number: int = 0
    ) -> bool:
        """Wait for ``count`` records (of frames numbered ``min_number`` or more), or for
        at least one and then none new for ``quiet_s`` (a pipeline that drops frames by
        policy); True if ``count`` came, False otherwise."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if self.wait_for(count, 0.5, min_number):
                return True
            n = len(self)
            if n != seen:
                seen, since = n, time.monotonic()
            elif n > 0 and time.monotonic() - since >= quiet_s:
                return False
        return False

    def take(self) -> list[Record]:
        with self._lock:
            out, self.records = self.records, []
            return out


@dataclass(eq=False)
class Replayer:
    """Feeds the workload's cameras into ``sink``, one thread per camera.

    ``fps`` paces each camera like a live one (camera j starts j/(n*fps) s after camera 0,
    so frames arrive evenly); ``fps=None`` hands frames over as fast as the sink takes them.
    Frame ``k`` of a camera gets number ``start_number + k`` and its capture time is stamped
    just before it goes to the sink, as :func:`sauron.ingest.producer.camera_frames` does.
    ``sink_factory`` makes each camera's sink (e.g. its own producer, as in the seed).
    """

    workload: Workload
    cameras: list[str]
    sink_factory: Callable[[], Callable[[Frame], Any]]
    _: KW_ONLY
    frames: int | None
    fps: float | None
    start_number: int = 0
    duration_s: float | None = None
    sent: int = field(default=0, init=False)
    stop: threading.Event = field(default_factory=threading.Event, init=False)
    started_at: float = field(default=0.0, init=False)
    finished_at: float = field(default=0.0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.frames is None and self.duration_s is None:
            raise ValueError("give frames or duration_s")

    def _run(self, index: int, t0: float) -> None:
        sink = self.sink_factory()
        camera = self.cameras[index]
        k = 0
        while not self.stop.is_set():
            if self.frames is not None and k >= self.frames:
                break
            if self.fps is not None:
                due = t0 + (index / len(self.cameras) + k) / self.fps
                if self.duration_s is not None and due - t0 >= self.duration_s:
                    break
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
            elif self.duration_s is not None and time.time() - t0 >= self.duration_s:
                break
            number = self.start_number + k
            sink(Frame(camera, number, time.time(), self.workload.jpeg(index, number)))
            with self._lock:
                self.sent += 1
            k += 1

    def start(self) -> Replayer:
        self.started_at = t0 = time.time() + 0.05
        for i in range(len(self.cameras)):
            t = threading.Thread(
                target=self._run, args=(i, t0), daemon=True, name=f"replay-{self.cameras[i]}"
            )
            t.start()
            self._threads.append(t)
        return self

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)
        self.finished_at = time.time()


@dataclass
class Usage:
    """CPU seconds and peak resident memory per role over a measurement window."""

    wall_s: float
    cpu_s: dict[str, float]
    peak_rss_mb: dict[str, float]

    @property
    def cores_used(self) -> float:
        return sum(self.cpu_s.values()) / self.wall_s if self.wall_s > 0 else 0.0


class ResourceMonitor:
    """Samples the processes of a run (this one, its children, the broker) every 0.2 s."""

    def __init__(self, broker_pid: int | None = None, interval_s: float = 0.2) -> None:
        self.broker_pid = broker_pid
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, tuple[str, psutil.Process]] = {}
        self._cpu0: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._rss: dict[int, int] = {}
        self._t0 = 0.0

    def _role(self, pid: int) -> str:
        if pid == self.broker_pid:
            return "broker"
        return "bench" if pid == psutil.Process().pid else "workers"

    def _discover(self) -> None:
        me = psutil.Process()
        found = [me, *me.children(recursive=True)]
        if self.broker_pid:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(self.broker_pid))
        for proc in found:
            if proc.pid not in self._procs:
                self._procs[proc.pid] = (self._role(proc.pid), proc)
                self._cpu0[proc.pid] = self._cpu(proc) or 0.0

    @staticmethod
    def _cpu(proc: psutil.Process) -> float | None:
        try:
            t = proc.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return None

    def _sample(self) -> None:
        self._discover()
        for pid, (_, proc) in list(self._procs.items()):
            cpu = self._cpu(proc)
            if cpu is not None:
                self._cpu_last[pid] = cpu
            with contextlib.suppress(psutil.Error):
                self._rss[pid] = max(self._rss.get(pid, 0), proc.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> ResourceMonitor:
        self._t0 = time.monotonic()
        self._discover()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-monitor")
        self._thread.start()
        return self

    def stop(self) -> Usage:
        self._sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        wall = time.monotonic() - self._t0
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for pid, (role, _) in self._procs.items():
            used = self._cpu_last.get(pid, self._cpu0[pid]) - self._cpu0[pid]
            cpu[role] = cpu.get(role, 0.0) + max(0.0, used)
            mb = self._rss.get(pid, 0) / 2**20
            rss[role] = max(rss.get(role, 0.0), mb)
        return Usage(
            wall, {k: round(v, 3) for k, v in cpu.items()}, {k: round(v, 1) for k, v in rss.items()}
        )


def percentiles(values: Iterable[float]) -> dict[str, float]:
    arr = np.asarray(list(values), np.float64)
    if arr.size == 0:
        return {}
    qs = np.percentile(arr, [1, 25, 50, 75, 95, 99])
    out = {f"p{q}": round(float(v), 1) for q, v in zip((1, 25, 50, 75, 95, 99), qs, strict=True)}
    return {**out, "mean": round(float(arr.mean()), 1), "max": round(float(arr.max()), 1)}


def allowed_cores() -> list[int]:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_name() -> str:
    """The processor's model name, for the machine section of a report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class RunResult:
    """What one configuration measured (JSON-ready through :meth:`to_json`)."""

    name: str  # floor, kafka, embedded, seed
    workers: int
    mode: str  # flood (as fast as possible) or paced
    tracking: bool
    embedder: str
    frames: int
    seconds: float
    fps: float
    cameras: int = 0
    offered_fps: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    stages_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    lag: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def throughput(records: list[Record], skip: float = 0.0) -> tuple[float, float]:
    """(frames/s, seconds) from the first frame that came out to the last; with ``skip``
    that share of the first frames is left out (a flood's start-up burst)."""
    if len(records) < 2:
        return 0.0, 0.0
    times = sorted(r.available_at for r in records)
    times = times[min(int(len(times) * skip), len(times) - 2) :]
    span = times[-1] - times[0]
    return ((len(times) - 1) / span if span > 0 else 0.0), span


def stage_means(records: list[Record]) -> dict[str, float]:
    """Mean milliseconds per frame of each stage, and the rest of the latency (transport
    and queueing between stages)."""
    if not records:
        return {}
    out = {s: float(np.mean([r.timings_ms.get(s, 0.0) for r in records])) for s in STAGES}
    busy = [sum(r.timings_ms.get(s, 0.0) for s in STAGES) for r in records]
    out["transport"] = float(
        np.mean([r.latency_ms - b for r, b in zip(records, busy, strict=True)])
    )
    return {k: round(v, 2) for k, v in out.items()}


def summarize(
    name: str,
    records: list[Record],
    usage: Usage,
    *,
    workers: int,
    mode: str,
    tracking: bool,
    embedder: str,
    cameras: int,
    offered_fps: float | None = None,
    lag: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    warmup_s: float = 0.0,
) -> RunResult:
    """One run's figures. With ``warmup_s``, latency percentiles are those of the frames
    captured after the run's first ``warmup_s`` seconds (steady state: every camera's
    first frame is a full scan with every face embedded, all at the same moment); the
    first seconds' own percentiles and those of all frames go to ``extra``."""
    extra = dict(extra or {})
    steady = records
    if warmup_s > 0 and records:
        t0 = min(r.captured_at for r in records)
        steady = [r for r in records if r.captured_at >= t0 + warmup_s]
        extra["latency_first_s_ms"] = percentiles(
            r.latency_ms for r in records if r.captured_at < t0 + warmup_s
        )
        extra["latency_all_frames_ms"] = percentiles(r.latency_ms for r in records)
        extra["warmup_s"] = warmup_s
    # A flood publishes everything at once: its first frames pay for that burst (the
    # broker and the producer busy on the same cores), so the steady rate is measured
    # after the first 20 % came out.
    fps, span = throughput(records, 0.2 if mode == "flood" else 0.0)
    cpu_total = sum(usage.cpu_s.values())
    return RunResult(
        name=name,
        workers=workers,
        mode=mode,
        tracking=tracking,
        embedder=embedder,
        frames=len(records),
        seconds=round(span, 3),
        fps=round(fps, 2),
        cameras=cameras,
        offered_fps=None if offered_fps is None else round(offered_fps, 2),
        latency_ms=percentiles(r.latency_ms for r in steady),
        stages_ms=stage_means(records),
        cpu={
            "cores_used": round(usage.cores_used, 2),
            "seconds": usage.cpu_s,
            "ms_per_frame": round(cpu_total * 1e3 / len(records), 1) if records else None,
        },
        peak_rss_mb=usage.peak_rss_mb,
        lag=lag or {},
        extra=extra,
    )
