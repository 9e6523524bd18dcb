"""The detect stage as a Kafka worker: frames in, detections (or named faces) out.

``sauron worker detect`` runs one (:func:`run_detect_worker`) or starts several processes
and keeps them at their number (:class:`DetectProcesses`); ``sauron run --bus kafka``
starts them too. With
``match.in_detect`` (the default) a detect worker also names the faces and writes the
annotated frames and sightings; what names them is handed in as a :data:`NamerFactory`
(``sauron.match.kafka_worker.topic_namer``), since detect comes before match and does not
import it.

Every frame is checked before any pixel is decoded (:mod:`sauron.detect.frame_checks`); a
refused frame lands in the dead-letter topic with the reason. With
``detect.max_frame_age_s`` set, frames older than that are dropped and counted instead of
detected, so a worker that fell behind catches up; frames of live cameras are dropped so
once older than ``detect.live_frame_age_s`` (by default), before they are decoded
(:class:`sauron.bus.worker.StageWorker`).

A worker is ready before it joins the group: its models are loaded and have run once on
a dummy frame (:func:`sauron.detect.stage.warm_up`), so the first real frame pays no
start-up cost.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sauron import SauronError, codec
from sauron.bus.admin import ensure_topics
from sauron.bus.process import RESTART_WINDOW_S, describe_exit, stop_on_signals, watch_parent
from sauron.bus.topics import Topics, frame_partition
from sauron.bus.worker import Output, Skip, StageWorker
from sauron.config import Settings
from sauron.detect.frame_checks import check_frame
from sauron.detect.stage import DetectStage, warm_up, worker_stage
from sauron.logs import setup_logging
from sauron.metrics import Metrics, serve
from sauron.types import Detections, Frame

log = logging.getLogger(__name__)

#: Names the faces of a frame: its outputs (the annotated result, the sightings).
Matcher = Callable[[Frame, Detections, dict[str, float]], list[Output]]
#: Makes, in the worker's own process, what names its faces (``match.in_detect``): given
#: the settings and the annotated topic's partition count, the matcher and what stops it.
NamerFactory = Callable[[Settings, int], tuple[Matcher, Callable[[], None]]]


def detect_handler(
    settings: Settings,
    stage: DetectStage,
    partitions: int,
    matcher: Matcher | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> Any:
    """Frames in, detections out; with a ``matcher`` (``match.in_detect``), named faces
    out: the annotated result and the sightings, as a match worker would write them.
    ``on_stale`` is told of every frame dropped for its age (``sauron run`` counts them
    per camera)."""
    topics = Topics.from_config(settings.topics)
    mode = settings.topics.partitioning
    max_age = settings.detect.max_frame_age_s
    max_pixels = settings.detect.max_frame_pixels

    def handle(value: bytes) -> list[Output]:
        frame = codec.decode_frame(value)
        check_frame(frame, max_pixels)
        if max_age is not None and time.time() - frame.captured_at > max_age:
            if on_stale is not None:
                on_stale(frame)
            raise Skip("stale", f"frame older than {max_age} s")
        det, timings = stage.process(frame)
        if matcher is not None:
            return matcher(frame, det, timings)
        return [
            Output(
                topics.detections,
                codec.encode_detections(frame, det, timings),
                key=frame.camera,
                partition=frame_partition(frame.camera, frame.number, partitions, mode),
                captured_at=frame.captured_at,
            )
        ]

    return handle


def build_detect_worker(
    settings: Settings,
    *,
    namer: NamerFactory | None,
    group: str | None = None,
    metrics: Metrics | None = None,
    on_stale: Callable[[Frame], None] | None = None,
) -> StageWorker:
    """A detect worker; with ``match.in_detect`` (the default) ``namer`` names the faces
    too. Its models are loaded and warmed before it joins the group."""
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    stage = worker_stage(settings)
    log.info("detect: models loaded and warmed in %.2f s", warm_up(stage))
    matcher: Matcher | None = None
    stop: Callable[[], None] | None = None
    if settings.match.in_detect:
        if namer is None:
            raise SauronError(
                "match.in_detect is on: a detect worker names the faces, so it needs a namer "
                "(sauron.match.kafka_worker.topic_namer)"
            )
        matcher, stop = namer(settings, counts[topics.annotated])

    def stale(msg: Any) -> None:  # a live frame the worker dropped unread for its age
        if on_stale is not None:
            with contextlib.suppress(codec.CodecError):
                on_stale(codec.decode_frame(msg.value() or b""))

    worker = StageWorker(
        settings,
        topic=topics.frames,
        name="detect",
        group=group or settings.topics.name("detect"),
        handler=detect_handler(settings, stage, counts[topics.detections], matcher, on_stale),
        batch_size=settings.detect.batch_size,
        metrics=metrics,
        live_max_age_s=settings.detect.live_frame_age_s,
        on_stale=stale,
    )
    if stop is not None:
        worker.on_stop.append(stop)
    return worker


def run_detect_worker(
    settings: Settings,
    *,
    namer: NamerFactory | None,
    group: str | None = None,
    metrics_port: int | None = None,
    parent: int | None = None,
    signals: DetectSignals | None = None,
    index: int = 0,
) -> None:
    """One detect worker in this process until SIGTERM/SIGINT (or ``parent`` is gone).

    On the signal the current batch is finished (its outputs flushed, or its transaction
    committed), offsets are committed and the group is left, then the function returns.
    With ``signals`` (``sauron run``) the worker reports when it is ready (models warm,
    first assignment received) and every frame it drops as stale.
    """
    metrics = Metrics()
    port = settings.metrics.port if metrics_port is None else metrics_port
    server = serve(metrics, port, settings.metrics.host)
    worker = build_detect_worker(
        settings,
        namer=namer,
        group=group,
        metrics=metrics,
        on_stale=signals.report_stale if signals is not None else None,
    )
    if signals is not None:
        worker.on_ready.append(signals.ready[index].set)
    stop_on_signals(worker.stop_event)
    if parent is not None:
        watch_parent(parent, worker.stop_event)
    try:
        worker.run()
    finally:
        if server is not None:
            server.stop()


class DetectSignals:
    """What spawned detect workers tell the process that started them: one ``ready``
    event each, and a queue of (camera, frame number) of the frames dropped as stale."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.ready = [ctx.Event() for _ in range(n)]
        self.stale: Any = ctx.Queue()

    def report_stale(self, frame: codec.Frame) -> None:
        self.stale.put((frame.camera, frame.number))

    def drain_stale(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        while True:
            try:
                out.append(self.stale.get_nowait())
            except queue.Empty:
                return out


def _process_main(
    settings_json: str,
    namer: NamerFactory | None,
    group: str | None,
    metrics_port: int | None,
    parent: int,
    signals: DetectSignals | None,
    index: int,
) -> None:
    setup_logging()
    run_detect_worker(
        Settings.model_validate_json(settings_json),
        namer=namer,
        group=group,
        metrics_port=metrics_port,
        parent=parent,
        signals=signals,
        index=index,
    )


def _spawn(
    ctx: Any,
    settings_json: str,
    namer: NamerFactory | None,
    group: str | None,
    metrics_port: int,
    signals: DetectSignals | None,
    index: int,
) -> Any:
    proc = ctx.Process(
        target=_process_main,
        args=(settings_json, namer, group, metrics_port, os.getpid(), signals, index),
        name=f"sauron-detect-{index}",
        daemon=True,
    )
    proc.start()
    return proc


class DetectProcesses:
    """Detect worker processes kept at their number while a command runs (``sauron run
    --bus kafka``, ``sauron worker detect --processes N``).

    :meth:`check`, called often, notices a process that ended while nobody asked it to
    (``kill -9``, out of memory, a crash), logs how it ended and starts a replacement with
    the same number; meanwhile Kafka gives its partitions to the others once its session
    times out. More than ``bus.max_restarts`` deaths within :data:`RESTART_WINDOW_S` sets
    :attr:`failure` instead (a worker that cannot live, e.g. a broker it cannot reach),
    and the command ends with that error rather than restarting for ever. A process that
    exits cleanly (exit code 0: it got a signal of its own) is not replaced; once all
    have, that is the failure, so the command never waits on workers that are gone."""

    def __init__(
        self,
        settings: Settings,
        n: int,
        *,
        namer: NamerFactory | None,
        group: str | None = None,
        metrics_base: int = 0,
        signals: DetectSignals | None = None,
    ) -> None:
        """Start ``n`` processes (one core each). With ``metrics_base`` > 0, process i
        serves its metrics on port ``metrics_base + i``; ``signals`` (made for ``n``)
        carries their readiness and stale drops back; ``namer`` (a module-level function:
        it travels to each process by name) names the faces with ``match.in_detect``."""
        self._ctx = mp.get_context("spawn")
        self._data = settings.model_dump_json()
        self._namer, self._group, self._signals = namer, group, signals
        self._ports = [metrics_base + i if metrics_base else 0 for i in range(n)]
        self.max_restarts = settings.bus.max_restarts
        self.procs = [self._start(i) for i in range(n)]
        self.restarts = 0
        self.failure: str | None = None
        self.stopping = False
        self._deaths: deque[float] = deque()
        self._ended: set[int] = set()  # numbers of processes that stopped cleanly

    def _start(self, i: int) -> Any:
        return _spawn(
            self._ctx, self._data, self._namer, self._group, self._ports[i], self._signals, i
        )

    def check(self) -> None:
        """Replace every process that died since the last look (or give up, see above)."""
        if self.stopping or self.failure is not None:
            return
        for i, proc in enumerate(self.procs):
            if proc.is_alive() or proc.exitcode is None or i in self._ended:
                continue
            if proc.exitcode == 0:  # it was asked to stop (a signal of its own): let it be
                self._ended.add(i)
                log.warning("%s (pid %s) stopped cleanly; not replaced", proc.name, proc.pid)
                if len(self._ended) == len(self.procs):
                    self.failure = "every detect process has stopped"
                continue
            how = describe_exit(proc.exitcode)
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > RESTART_WINDOW_S:
                self._deaths.popleft()
            if len(self._deaths) > self.max_restarts:
                self.failure = (
                    f"detect processes died {len(self._deaths)} times within "
                    f"{RESTART_WINDOW_S:.0f} s (the last {proc.name}, {how}); giving up"
                )
                log.error("%s", self.failure)
                return
            if self._signals is not None:
                self._signals.ready[i].clear()
            log.error(
                "%s (pid %s) died: %s; the group gives its partitions to the others, "
                "a replacement starts (%d restart(s) in the last %.0f s, at most %d)",
                proc.name,
                proc.pid,
                how,
                len(self._deaths),
                RESTART_WINDOW_S,
                self.max_restarts,
            )
            self.procs[i] = self._start(i)
            self.restarts += 1

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def send(self, signum: int) -> None:
        """Pass a signal on (each worker then finishes its batch, commits and leaves the
        group); no process is replaced from now on."""
        self.stopping = True
        for p in self.procs:
            if p.pid is not None and p.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to every process, wait for them, SIGKILL what is left."""
        self.send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                log.warning("%s (pid %s) did not stop; killing it", p.name, p.pid)
                p.kill()
                p.join(5)
