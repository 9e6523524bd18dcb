"""The embedded bus: the same stages on one machine, without Kafka, supervised.

Each detect process serves one *slot*: the cameras placed on it. A camera is placed on
the slot with the fewest cameras when its first frame arrives and stays there while it
runs (its tracker lives in that process); a camera that ends frees its place, so cameras
that come later go where there is room. With ``topics.partitioning: frame`` a camera's
frames are spread over the slots frame by frame, starting at its own.

Frames wait in the parent, in a bounded queue per slot; a sender thread per process hands
them over a pipe, at most ``CREDIT`` at a time, and the collector thread reads every
process's output pipe and hands each output to ``on_output`` (the match stage). So the
parent always knows which frames a process holds.

Supervision: the collector also watches every process. A process that dies is noticed at
once (its pipe closes), logged with its exit code or signal, the frames it held are
counted as lost (``on_skipped`` is called with each), and a process that is already warm (a
standby, ``standby`` of them) takes its slot, its cameras and its waiting frames; a new
standby is started behind it. More than ``max_restarts`` deaths within a minute ends the
bus with one error (``failure``) instead of a restart loop. A process that cannot load its
models says why over its pipe, and :meth:`EmbeddedBus.start` raises that error at once.

Back-pressure: with ``block=True`` (finite sources run to the end) a full queue makes
the camera wait, nothing is dropped; cameras in ``live`` never wait. For those, and for
every camera without ``block``, the oldest waiting frame of the slot is dropped and
counted, so the view stays live and memory stays bounded.

Staying live: with ``live_max_age_s``, a frame of a ``live`` camera that its process
could not finish within that many seconds of its capture (its age when its turn comes,
plus the process's recent time per frame for it and the frames ahead of it in the pipe,
counted as at most half the limit) is dropped as ``stale`` before it is sent, the way the
Kafka detect workers drop theirs (``detect.live_frame_age_s``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from multiprocessing.connection import wait as wait_any
from typing import Any, Protocol

from sauron import SauronError
from sauron.bus.process import RESTART_WINDOW_S, describe_exit
from sauron.config import Settings
from sauron.logs import setup_logging
from sauron.queues import LatestQueue
from sauron.types import Detections, Frame

log = logging.getLogger(__name__)

DetectOutput = tuple[Frame, Detections | None, dict[str, float], str | None]

#: Frames handed to one process at a time: one being processed, the others waiting in
#: its pipe, so that it never waits for the main process between two frames.
CREDIT = 4
#: A new standby starts this long after a takeover, so that loading its models does not
#: slow the processes catching up.
STANDBY_DELAY_S = 3.0


class FrameStage(Protocol):
    """What a detect process runs on each frame (``sauron.detect.stage.DetectStage``)."""

    def process(self, frame: Frame) -> tuple[Detections, dict[str, float]]: ...


#: Builds a process's stage from the settings; a module-level function, so that it
#: reaches spawned processes (``sauron.detect.stage.worker_stage``).
StageFactory = Callable[[Settings], FrameStage]


def _detect_worker(settings_json: str, make_stage: StageFactory, inbox: Any, outbox: Any) -> None:
    """Body of a detect process: ("ready",) or ("error", why) first, then frames in and
    ("out", camera, number, detections, timings, error) out, in the order the frames came,
    until a None or the parent is gone. The frame's pixels do not travel back: the parent
    still holds the frame it sent and pairs it with its output."""
    # Ctrl-C reaches the whole process group; the parent stops this process once it has
    # stopped the cameras, so the signal is not ours to act on (see _start_ignoring_ctrl_c).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging()
    try:
        stage = make_stage(Settings.model_validate_json(settings_json))
    except SauronError as exc:
        outbox.send(("error", str(exc)))
        sys.exit(1)
    except Exception as exc:  # any failure to load: say which, the parent reports it
        outbox.send(("error", f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    try:
        outbox.send(("ready",))
        while (frame := inbox.recv()) is not None:
            try:
                det, timings = stage.process(frame)
            except Exception as exc:  # a bad frame must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
                outbox.send(("out", frame.camera, frame.number, None, {}, error))
                continue
            outbox.send(("out", frame.camera, frame.number, det, timings, None))
    except (EOFError, OSError):  # the parent is gone, or closed our pipes
        return


@dataclass
class EmbeddedStats:
    submitted: int = 0
    completed: int = 0  # outputs handed to on_output (failed ones included)
    dropped: int = 0  # frames dropped on purpose: queue full, or stale (counted in both)
    stale: int = 0  # frames of live cameras dropped as too old to be detected in time
    failed: int = 0  # frames whose detection raised
    lost: int = 0  # frames a process held when it died
    restarts: int = 0  # processes replaced after dying
    unfinished: int = 0  # frames still waiting or in a process when the bus closed


@dataclass(eq=False)
class _Worker:
    """One detect process and the parent's ends of its two pipes."""

    number: int
    proc: Any
    inbox: Any  # parent -> process: frames
    outbox: Any  # process -> parent: ready/error/outputs
    ready: bool = False
    slot: _Slot | None = None  # None while a standby
    in_flight: deque[Frame] = field(default_factory=deque)
    sent_at: deque[float] = field(default_factory=deque)  # monotonic, one per in_flight
    last_out: float = 0.0  # monotonic time of its last output
    handle_s: float = 0.0  # its recent time per frame (moving average)
    gone: bool = False

    @property
    def name(self) -> str:
        return f"detect process {self.number} (pid {self.proc.pid})"


@dataclass(eq=False)
class _Slot:
    """A place for cameras: the frames waiting for it and the process that serves it."""

    index: int
    space: threading.Condition  # a frame left ``waiting`` (cameras wait on it)
    work: threading.Condition  # a frame to send, or room for one (the sender waits on it)
    waiting: LatestQueue[Frame]
    worker: _Worker | None = None
    cameras: set[str] = field(default_factory=set)


@dataclass(eq=False)
class EmbeddedBus:
    """Supervised detect processes fed from per-slot queues; results to ``on_output``.

    Each process runs the stage ``make_stage`` builds from the settings."""

    settings: Settings
    _: KW_ONLY
    processes: int
    make_stage: StageFactory
    block: bool
    on_output: Callable[[DetectOutput], None]
    #: called with every frame that will never come out: dropped (a live camera's
    #: oldest waiting frame, or a stale one) or lost (held by a process that died)
    on_skipped: Callable[[Frame], None] | None = None
    #: cameras played in real time: they never wait for room, and their frames are
    #: dropped as stale past ``live_max_age_s``
    live: frozenset[str] = frozenset()
    live_max_age_s: float | None = None
    queue_size: int = 16
    standby: int = 1
    max_restarts: int = 5
    metrics: Any = None  # a sauron.metrics.Metrics: lost frames, deaths, liveness
    stats: EmbeddedStats = field(default_factory=EmbeddedStats, init=False)
    failure: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes}")
        self._ctx = mp.get_context("spawn")
        # one lock; conditions on it for start-up and deaths, and per slot for its frames
        lock = threading.RLock()
        self._cond = threading.Condition(lock)
        self._slots = [
            _Slot(
                i,
                threading.Condition(lock),
                threading.Condition(lock),
                LatestQueue(self.queue_size),
            )
            for i in range(self.processes)
        ]
        self._workers: list[_Worker] = []  # every live process, standbys included
        self._placement: dict[str, int] = {}
        #: every camera seen -> the slot it was last placed on
        self.history: dict[str, int] = {}
        #: frames handled, by (slot, camera)
        self.handled: Counter[tuple[int, str]] = Counter()
        self._deaths: deque[float] = deque()
        self._spawned = 0
        self._closing = False
        self._started = False  # every slot was ready once: deaths are restarts from then on
        self._standby_due: float | None = None  # when to start missing standbys
        self._settings_json = self.settings.model_dump_json()
        self._collector = threading.Thread(
            target=self._collect, name="embedded-collect", daemon=True
        )

    # ------------------------------------------------------------------ start / stop

    def start(self, timeout: float = 300.0, stop: threading.Event | None = None) -> EmbeddedBus:
        """Start the processes and wait until each has loaded its models. Raises
        SauronError at once when one cannot start; returns early when ``stop`` is set."""
        with self._cond:
            for slot in self._slots:
                self._attach(slot, self._spawn())
        self._collector.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(s.worker is not None and s.worker.ready for s in self._slots):
                if self.failure is not None:
                    break
                if stop is not None and stop.is_set():
                    return self
                if time.monotonic() > deadline:
                    self.failure = f"detect processes not ready after {timeout:.0f} s"
                    break
                self._cond.wait(0.1)
            failure = self.failure
        if failure is not None:
            self.close()
            raise SauronError(failure)
        with self._cond:
            self._started = True
            for _ in range(self.standby):
                self._spawn()
        log.info("embedded bus: %d detect process(es) ready", self.processes)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop every process (a None to each, then terminate what has not stopped within
        ``timeout``) and the collector; never blocks longer than about ``timeout`` + 2 s."""
        with self._cond:
            self._closing = True
            workers = list(self._workers)
            self._wake_all()
        for w in workers:  # a serving process gets a None from its sender; a standby
            if w.slot is None:  # sees its pipe close; one still loading holds nothing
                _close_quietly(w.inbox)
            if not w.ready:
                w.proc.terminate()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            if w.proc.is_alive():
                log.warning("%s did not stop, terminating it", w.name)
                w.proc.terminate()
                w.proc.join(1.0)
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(1.0)
        if self._collector.is_alive():
            self._collector.join(timeout)
        with self._cond:
            left = sum(len(s.waiting) for s in self._slots)
            left += sum(len(w.in_flight) for w in self._workers)
            self.stats.unfinished = left
        if left:
            log.info(
                "embedded bus: %d frame(s) were not detected: still waiting when it stopped", left
            )

    # ------------------------------------------------------------------ frames in

    def submit(self, frame: Frame) -> None:
        with self._cond:
            slot = self._slots[self._slot_of(frame)]
            self.stats.submitted += 1
            wait = self.block and frame.camera not in self.live
            while wait and slot.waiting.full and not self._refusing:
                slot.space.wait(0.5)
            if slot.waiting.full and self._refusing:
                dropped = [frame]
            else:
                dropped = slot.waiting.put(frame)
                slot.work.notify()
            self.stats.dropped += len(dropped)
        if dropped and self.metrics is not None:
            self.metrics.dropped.labels(stage="detect", reason="queue_full").inc(len(dropped))
        self._skipped(dropped)

    def _stale(self, worker: _Worker, frame: Frame) -> bool:
        """A frame of a live camera that ``worker`` could not finish within
        ``live_max_age_s`` of its capture (caller holds the lock)."""
        limit = self.live_max_age_s
        if limit is None or frame.camera not in self.live:
            return False
        ahead = min(worker.handle_s * (len(worker.in_flight) + 1), limit / 2)
        return time.time() - frame.captured_at + ahead > limit

    @property
    def _refusing(self) -> bool:
        """Closing or failed: a frame that finds its slot full is dropped at once."""
        return self._closing or self.failure is not None

    def _skipped(self, frames: list[Frame]) -> None:
        if self.on_skipped is not None:
            for frame in frames:
                self.on_skipped(frame)

    def _slot_of(self, frame: Frame) -> int:
        index = self._placement.get(frame.camera)
        if index is None:
            index = min(self._slots, key=lambda s: (len(s.cameras), s.index)).index
            self._slots[index].cameras.add(frame.camera)
            self._placement[frame.camera] = self.history[frame.camera] = index
            log.info("camera %s placed on detect process slot %d", frame.camera, index)
        if self.settings.topics.partitioning == "frame":
            return (index + frame.number) % self.processes
        return index

    def release(self, camera: str) -> None:
        """The camera has ended: its place goes to cameras that come later."""
        with self._cond:
            index = self._placement.pop(camera, None)
            if index is not None:
                self._slots[index].cameras.discard(camera)

    @property
    def placement(self) -> dict[str, int]:
        """Running cameras -> the slot (detect process index) that serves them."""
        with self._cond:
            return dict(self._placement)

    @property
    def outstanding(self) -> int:
        with self._cond:
            s = self.stats
            return s.submitted - s.completed - s.dropped - s.lost

    def parts(self) -> dict[str, str]:
        """``detect-I`` -> running (a ready process serves slot I), restarting (its new
        process is loading its models), stopped, or failed (the bus gave up)."""
        with self._cond:
            return {f"detect-{s.index}": self._state(s) for s in self._slots}

    def _state(self, slot: _Slot) -> str:
        if self.failure is not None:
            return "failed"
        if self._closing or slot.worker is None:
            return "stopped"
        return "running" if slot.worker.ready else "restarting"

    # ------------------------------------------------------------------ processes

    def _spawn(self) -> _Worker:
        """Start one process (caller holds the lock); it is a standby until attached."""
        their_in, our_in = self._ctx.Pipe(duplex=False)
        our_out, their_out = self._ctx.Pipe(duplex=False)
        number = self._spawned
        self._spawned += 1
        proc = self._ctx.Process(
            target=_detect_worker,
            name=f"sauron-detect-{number}",
            daemon=True,
            args=(self._settings_json, self.make_stage, their_in, their_out),
        )
        _start_ignoring_ctrl_c(proc)
        their_in.close()  # so that a dead process shows as a closed pipe here
        their_out.close()
        worker = _Worker(number, proc, our_in, our_out)
        self._workers.append(worker)
        self._cond.notify_all()
        return worker

    def _attach(self, slot: _Slot, worker: _Worker) -> None:
        """Give ``slot`` to ``worker`` (caller holds the lock); it sends once ready."""
        slot.worker, worker.slot = worker, slot
        if worker.ready:
            self._start_sender(worker)

    def _start_sender(self, worker: _Worker) -> None:
        threading.Thread(
            target=self._send, args=(worker,), name=f"embedded-send-{worker.number}", daemon=True
        ).start()

    def _send(self, worker: _Worker) -> None:
        """Hand the slot's waiting frames to its process, ``CREDIT`` at a time; stale
        frames of live cameras are dropped on the way."""
        slot = worker.slot
        assert slot is not None
        while True:
            stale: list[Frame] = []
            with self._cond:
                while not (
                    worker.gone
                    or self._closing
                    or (len(slot.waiting) and len(worker.in_flight) < CREDIT)
                ):
                    slot.work.wait()
                if worker.gone:
                    return
                frame: Frame | None = None
                while not self._closing and len(slot.waiting):
                    frame = slot.waiting.get(timeout=0)
                    slot.space.notify()
                    if not self._stale(worker, frame):
                        worker.in_flight.append(frame)
                        worker.sent_at.append(time.monotonic())
                        break
                    stale.append(frame)
                    frame = None
                self.stats.stale += len(stale)
                self.stats.dropped += len(stale)
            if stale:
                if self.metrics is not None:
                    self.metrics.dropped.labels(stage="detect", reason="stale").inc(len(stale))
                self._skipped(stale)
                if frame is None and not self._closing:
                    continue  # nothing fresh was waiting
            try:
                worker.inbox.send(frame)
            # the process died: the collector handles it (and may close the pipe while we
            # write to it, which multiprocessing reports as a TypeError: no handle)
            except (OSError, ValueError, TypeError):
                return
            if frame is None:
                return

    # ------------------------------------------------------------------ collector

    def _collect(self) -> None:
        """Read every process's outputs and notice every death, until closed."""
        while True:
            with self._cond:
                if self._closing and not any(w.proc.is_alive() for w in self._workers):
                    return
                watched = {w.outbox: w for w in self._workers}
            ready = wait_any(list(watched), timeout=0.2) if watched else []
            if not watched:
                time.sleep(0.05)
            for conn in ready:
                worker = watched[conn]
                try:
                    msg = worker.outbox.recv()
                except (EOFError, OSError):
                    self._died(worker)
                    continue
                self._handle(worker, msg)
            self._beat()
            self._top_up()

    def _top_up(self) -> None:
        """Start the standbys that are missing once it is time."""
        with self._cond:
            due = self._standby_due
            if due is None or time.monotonic() < due or self._closing:
                return
            self._standby_due = None
            while sum(w.slot is None for w in self._workers) < self.standby:
                self._spawn()

    def _handle(self, worker: _Worker, msg: Any) -> None:
        kind = msg[0]
        if kind == "ready":
            with self._cond:
                worker.ready = True
                if worker.slot is not None:
                    self._start_sender(worker)
                self._cond.notify_all()
            log.info("%s ready", worker.name)
            return
        if kind == "error":
            with self._cond:
                if self.failure is None:
                    self.failure = f"a detect process could not start: {msg[1]}"
                self._wake_all()
            return
        _, camera, number, det, timings, error = msg
        with self._cond:
            # outputs come back in the order the frames went: the oldest held is this one
            frame = worker.in_flight.popleft() if worker.in_flight else None
            if worker.sent_at:
                now, sent = time.monotonic(), worker.sent_at.popleft()
                took = now - max(sent, worker.last_out)
                worker.handle_s = (
                    took if not worker.handle_s else 0.8 * worker.handle_s + 0.2 * took
                )
                worker.last_out = now
            if frame is None or (frame.camera, frame.number) != (camera, number):
                log.error(
                    "%s returned camera %s frame %d out of order; output dropped",
                    worker.name,
                    camera,
                    number,
                )
                return
            if worker.slot is not None:
                self.handled[worker.slot.index, frame.camera] += 1
                worker.slot.work.notify()
        if error is not None:
            log.warning(
                "camera %s frame %d failed in detect: %s", frame.camera, frame.number, error
            )
        item: DetectOutput = (frame, det, timings, error)
        try:
            self.on_output(item)
        except Exception:
            log.exception("match stage failed on camera %s frame %d", frame.camera, frame.number)
        finally:
            with self._cond:
                self.stats.completed += 1
                self.stats.failed += error is not None

    def _died(self, worker: _Worker) -> None:
        """A process is gone: count what it held, give its slot to a warm process."""
        worker.proc.join(1.0)
        how = describe_exit(worker.proc.exitcode)
        _close_quietly(worker.outbox)
        _close_quietly(worker.inbox)
        with self._cond:
            worker.gone = True
            self._workers.remove(worker)
            lost = list(worker.in_flight)
            worker.in_flight.clear()
            worker.sent_at.clear()
            self.stats.lost += len(lost)
            closing = self._closing
            if not closing:
                takeover = self._replace(worker, how)
            self._wake_all()
        if closing:
            return
        if self.metrics is not None:
            self.metrics.errors.labels(stage="detect", kind="process_died").inc()
            if lost:
                self.metrics.dropped.labels(stage="detect", reason="lost").inc(len(lost))
        where = f"slot {worker.slot.index}" if worker.slot is not None else "standby"
        log.error(
            "%s (%s) died: %s; %d frame(s) it held are lost; %s",
            *(worker.name, where, how, len(lost), takeover),
        )
        self._skipped(lost)

    def _replace(self, dead: _Worker, how: str) -> str:
        """Restart after a death (caller holds the lock); what happened, for the log."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > RESTART_WINDOW_S:
            self._deaths.popleft()
        if not self._started and self.failure is None:  # a start-up failure
            self.failure = f"{dead.name} died while loading its models: {how}"
            return "the bus stops"
        if len(self._deaths) > self.max_restarts:
            self.failure = (
                f"detect processes keep dying ({len(self._deaths)} deaths within "
                f"{RESTART_WINDOW_S:.0f} s, the last {how}); giving up"
            )
            return "too many deaths, the bus stops"
        if self.failure is not None:
            return "the bus stops"
        self.stats.restarts += dead.slot is not None
        if dead.slot is None:  # no cameras moved, nothing to catch up: replace it now
            self._standby_due = now
            return "a new standby starts now"
        self._standby_due = now + STANDBY_DELAY_S
        spare = next((w for w in self._workers if w.slot is None and w.ready), None)
        spare = spare or next((w for w in self._workers if w.slot is None), None)
        took = spare if spare is not None else self._spawn()
        self._attach(dead.slot, took)
        state = "warm" if took.ready else "starting"
        return f"{took.name} ({state}) takes its cameras {sorted(dead.slot.cameras)}"

    def _wake_all(self) -> None:
        """After a death, a failure or the close (caller holds the lock): every waiter
        looks again."""
        self._cond.notify_all()
        for slot in self._slots:
            slot.space.notify_all()
            slot.work.notify_all()

    def _beat(self) -> None:
        if self.metrics is None:
            return
        with self._cond:
            states = [(s.index, s.worker) for s in self._slots]
        for index, worker in states:
            comp = self.metrics.health.component(f"detect-{index}")
            if worker is not None and worker.ready:
                comp.beat(pid=worker.proc.pid, in_flight=len(worker.in_flight))
            else:
                comp.state = "restarting" if worker is not None else "stopped"


def _start_ignoring_ctrl_c(proc: Any) -> None:
    """Start ``proc`` so that it ignores SIGINT from its first instruction on.

    A spawned process imports for a second or more before its body runs, and a Ctrl-C
    meanwhile would end it with a KeyboardInterrupt traceback. An ignored signal stays
    ignored across exec, so the main thread starts it with SIGINT ignored for the moment
    of the start (signal dispositions can only be changed there); a process started from
    another thread (a replacement) ignores it once its body runs."""
    if threading.current_thread() is not threading.main_thread():
        proc.start()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc.start()
    finally:
        if previous is not None:  # None: a handler not set from Python, left alone
            signal.signal(signal.SIGINT, previous)


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(OSError):
        conn.close()
