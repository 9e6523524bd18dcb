"""The embedded bus: the same stages on one machine, without Kafka.

Each detect worker is a process with its own bounded input queue (its "partition");
frames are routed to queues exactly as to Kafka partitions (by camera, or spread frame by
frame), and every worker's output comes back on one queue to the match stage in the main
process. dlib is single-threaded, so processes are what use the cores.

Back-pressure: with ``block=True`` (finite sources run to the end) a full queue makes
the camera wait, nothing is dropped. Otherwise (live cameras) the oldest queued frame of
that partition is dropped and counted, so the view stays live and memory stays bounded.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from sauron.bus.topics import frame_partition
from sauron.config import Settings
from sauron.logs import setup_logging
from sauron.types import Detections, Frame

log = logging.getLogger(__name__)

DetectOutput = tuple[Frame, Detections | None, dict[str, float], str | None]


class FrameStage(Protocol):
    """What a detect process runs on each frame (``sauron.detect.stage.DetectStage``)."""

    def process(self, frame: Frame) -> tuple[Detections, dict[str, float]]: ...


#: Builds a process's stage from the settings; a module-level function, so that it
#: reaches spawned processes (``sauron.detect.stage.worker_stage``).
StageFactory = Callable[[Settings], FrameStage]


def _detect_worker(settings_json: str, make_stage: StageFactory, inq: Any, outq: Any) -> None:
    """Body of a detect process: frames in, (frame, detections, timings, error) out."""
    # Ctrl-C reaches the whole process group; the parent stops this process (a None in
    # its queue) once it has stopped the cameras, so the signal is not ours to act on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging()
    stage = make_stage(Settings.model_validate_json(settings_json))
    outq.put(None)  # ready
    while True:
        frame = inq.get()
        if frame is None:
            break
        try:
            det, timings = stage.process(frame)
            outq.put((frame, det, timings, None))
        except Exception as exc:  # a bad frame must not kill the worker
            outq.put((frame, None, {}, f"{type(exc).__name__}: {exc}"))


@dataclass
class EmbeddedStats:
    submitted: int = 0
    completed: int = 0
    dropped: int = 0
    failed: int = 0


@dataclass(eq=False)
class EmbeddedBus:
    """Detect processes fed by partition queues; results handed to ``on_output``.

    Each process runs the stage ``make_stage`` builds from the settings."""

    settings: Settings
    _: KW_ONLY
    processes: int
    make_stage: StageFactory
    block: bool
    on_output: Callable[[DetectOutput], None]
    queue_size: int = 16
    stats: EmbeddedStats = field(default_factory=EmbeddedStats, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._inqs = [ctx.Queue(self.queue_size) for _ in range(self.processes)]
        self._outq = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_detect_worker,
                name=f"sauron-detect-{i}",
                daemon=True,
                args=(self.settings.model_dump_json(), self.make_stage, q, self._outq),
            )
            for i, q in enumerate(self._inqs)
        ]
        self._collector = threading.Thread(
            target=self._collect, name="embedded-collect", daemon=True
        )

    def start(self, timeout: float = 120.0) -> EmbeddedBus:
        for p in self._procs:
            p.start()
        for _ in self._procs:  # wait until every worker has loaded its models
            if self._outq.get(timeout=timeout) is not None:
                raise RuntimeError("detect worker sent output before it was ready")
        self._collector.start()
        log.info("embedded bus: %d detect process(es) ready", len(self._procs))
        return self

    def submit(self, frame: Frame) -> None:
        part = frame_partition(
            frame.camera, frame.number, self.processes, self.settings.topics.partitioning
        )
        q = self._inqs[part]
        with self._lock:
            self.stats.submitted += 1
        if self.block:
            q.put(frame)
            return
        while True:
            try:
                q.put_nowait(frame)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    with self._lock:
                        self.stats.dropped += 1
                        self.stats.completed += 1
                except queue.Empty:
                    pass

    @property
    def outstanding(self) -> int:
        with self._lock:
            return self.stats.submitted - self.stats.completed

    def _collect(self) -> None:
        while True:
            item = self._outq.get()
            if item is None:
                break
            frame, _det, _timings, error = item
            try:
                if error is not None:
                    self.stats.failed += 1
                    log.warning(
                        "camera %s frame %d failed in detect: %s", frame.camera, frame.number, error
                    )
                self.on_output(item)
            except Exception:
                log.exception(
                    "match stage failed on camera %s frame %d", frame.camera, frame.number
                )
            finally:
                with self._lock:
                    self.stats.completed += 1

    def close(self, timeout: float = 10.0) -> None:
        for q in self._inqs:
            q.put(None)
        for p in self._procs:
            p.join(timeout)
            if p.is_alive():
                log.warning("detect process %s did not stop, terminating", p.pid)
                p.terminate()
        self._outq.put(None)
        self._collector.join(timeout)
