"""``sauron run``: every stage on this machine, over the embedded bus or a Kafka cluster."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sauron import SauronError, codec
from sauron.config import Settings
from sauron.ingest.producer import IngestGroup
from sauron.match.watchlist import Watchlist
from sauron.serve.results import ResultsWriter
from sauron.types import Frame, Result

if TYPE_CHECKING:
    from sauron.match.enroll import WatchlistDirWatcher

log = logging.getLogger(__name__)

IDLE_FINISH_S = 30.0


class PublishedJpegs:
    """The JPEGs of the frames ``sauron run`` published whose result has not come back
    yet, at most ``per_camera`` a camera (the oldest go first), for annotated results
    that arrive without them (``bus.annotated_jpeg: false``). Any thread."""

    def __init__(self, per_camera: int = 64) -> None:
        self.per_camera = per_camera
        self._held: dict[str, OrderedDict[int, bytes]] = {}
        self._lock = threading.Lock()

    def keep(self, frame: Frame) -> None:
        with self._lock:
            held = self._held.setdefault(frame.camera, OrderedDict())
            held[frame.number] = frame.jpeg
            while len(held) > self.per_camera:
                held.popitem(last=False)

    def take(self, camera: str, number: int) -> bytes | None:
        with self._lock:
            held = self._held.get(camera)
            return held.pop(number, None) if held is not None else None

    def restore(self, result: Result) -> Result | None:
        """``result`` with its frame's JPEG (None if it came without and is no longer
        held); a result that carries its JPEG is returned as it is."""
        jpeg = self.take(result.frame.camera, result.frame.number)
        if result.frame.jpeg:
            return result
        if jpeg is None:
            return None
        return replace(result, frame=replace(result.frame, jpeg=jpeg))


@dataclass
class RunOptions:
    processes: int = 0
    until_done: bool = False
    results: Path | None = None
    timeout_s: float | None = None
    on_result: list[Callable[[Result], None]] = field(default_factory=list)
    # Called with the embedded matcher's live Watchlist before matching starts (the web
    # app fills it from the store and sends enrollments and deletions to it).
    on_watchlist: list[Callable[[Watchlist], None]] = field(default_factory=list)
    # Called with a function that gives the state of each camera and detect process (the
    # web app's /api/health shows them).
    on_parts: list[Callable[[Callable[[], dict[str, str]]], None]] = field(default_factory=list)


@dataclass
class RunSummary:
    frames_in: dict[str, int]
    frames_out: dict[str, int]
    named: dict[str, int]
    duplicates: int
    dropped: int
    dead_letters: int
    camera_errors: dict[str, str]
    seconds: float
    # Kafka: frames the detect workers dropped as older than detect.max_frame_age_s (also
    # in ``dropped``), seconds until the workers were ready, and camera -> partition
    dropped_stale: int = 0
    ready_s: float | None = None
    placement: dict[str, int] = field(default_factory=dict)
    members: dict[str, list[int]] = field(default_factory=dict)  # group member -> partitions
    # Frames held by detect processes that died (embedded bus), processes replaced, and
    # the error that ended the run (processes that cannot start or keep dying)
    lost: int = 0
    restarts: int = 0
    error: str | None = None
    # frames that came after the results file had moved past them (not written), and
    # (embedded bus) frames still waiting or in detection when the run stopped
    late: int = 0
    unfinished: int = 0
    stopped: bool = False  # a signal (SIGINT/SIGTERM) ended the run

    @property
    def ok(self) -> bool:
        return not self.camera_errors and self.error is None


def worker_count(requested: int) -> int:
    return requested if requested > 0 else max(1, os.cpu_count() or 1)


def load_watchlist(settings: Settings) -> tuple[Watchlist, WatchlistDirWatcher | None]:
    """The embedded watchlist, and a started thread that reloads it when the folder changes."""
    if settings.match.watchlist is None:
        return Watchlist(), None
    from sauron.detect.models import FaceModel
    from sauron.match.enroll import WatchlistDirWatcher, load_watchlist_dir

    root = settings.match.watchlist
    model = FaceModel(detector="dlib-hog", embedder=settings.detect.embedder)
    largest = settings.match.largest_face
    watchlist = Watchlist(load_watchlist_dir(model, root, largest=largest))
    watcher = WatchlistDirWatcher(model, root, watchlist, largest=largest)
    watcher.start()
    return watchlist, watcher


#: A second signal this soon after the first is the same request delivered twice, as
#: ``timeout`` does (to the command, then to its whole process group), not a user's
#: second Ctrl-C.
REPEAT_SIGNAL_S = 1.0


class _Stopper:
    """Ends a run on SIGINT/SIGTERM (in the main thread) or when told to. The first
    signal asks for a clean stop (the summary is still written); a second one, while the
    clean stop is under way and more than :data:`REPEAT_SIGNAL_S` later, interrupts at
    once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._first: float | None = None
        self._before: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._before[sig] = signal.signal(sig, self._on_signal)

    def __enter__(self) -> _Stopper:
        return self

    def __exit__(self, *_exc: object) -> None:
        """The handlers of before the run are back: a signal after the run is not its."""
        for sig, handler in self._before.items():
            signal.signal(sig, handler)
        self._before.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self._first is not None:
            if time.monotonic() - self._first > REPEAT_SIGNAL_S:
                raise KeyboardInterrupt
            log.debug("%s again at once: the same request, still stopping cleanly", name)
            return
        self._first = time.monotonic()
        log.info("%s: stopping", name)
        self.event.set()


def _wait(done: Callable[[], bool], stopper: _Stopper, timeout: float | None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    last_log = time.monotonic()
    while not stopper.event.is_set() and not done():
        if deadline is not None and time.monotonic() > deadline:
            raise SauronError(f"run did not finish within {timeout:.0f} s")
        time.sleep(0.05)
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            log.info("running ...")


def _summary(
    ingest: IngestGroup, writer: ResultsWriter, started: float, dropped: int, dead: int
) -> RunSummary:
    return RunSummary(
        frames_in={k: s.frames for k, s in ingest.status.items()},
        frames_out=dict(writer.written),
        named=dict(writer.named),
        duplicates=writer.duplicates,
        late=writer.late,
        dropped=dropped,
        dead_letters=dead,
        camera_errors={k: s.error for k, s in ingest.status.items() if s.error},
        seconds=time.monotonic() - started,
    )


def run_embedded(settings: Settings, opts: RunOptions, stopper: _Stopper) -> RunSummary:
    """Every stage in this machine's processes; stops cleanly on SIGINT/SIGTERM in every
    state (the summary says how far it got), ends with an error when the detect
    processes cannot start or keep dying."""
    from sauron.bus.embedded import DetectOutput, EmbeddedBus
    from sauron.detect.stage import warm_worker_stage
    from sauron.match.stage import MatchStage
    from sauron.metrics import Metrics, serve

    started = time.monotonic()
    watchlist, watcher = load_watchlist(settings)
    for attach in opts.on_watchlist:
        attach(watchlist)
    stage = MatchStage(settings.match, watchlist)
    # Every frame handed to the bus comes out, or is marked skipped (dropped, lost, or
    # failed): the writer never needs to give up on a gap after a while, which would
    # turn a frame still being detected on a busy machine into one not written.
    writer = ResultsWriter(opts.results, patient={c.name for c in settings.cameras})
    metrics = Metrics()

    def on_output(item: DetectOutput) -> None:
        frame, det, timings, _error = item
        if det is None:  # detection failed (logged by the bus): nothing to write
            writer.skip(frame.camera, frame.number)
            return
        try:
            result, _ = stage.process(frame, det, timings)
        except Exception:
            writer.skip(frame.camera, frame.number)
            raise
        writer.add(result)
        metrics.frames_out.labels(stage="detect").inc()
        for cb in opts.on_result:
            cb(result)

    def on_skipped(frame: Frame) -> None:  # dropped or lost: the writer waits no more
        writer.skip(frame.camera, frame.number)

    b = settings.bus
    bus = EmbeddedBus(
        settings,
        processes=worker_count(opts.processes),
        make_stage=warm_worker_stage,
        block=opts.until_done,
        on_output=on_output,
        on_skipped=on_skipped,
        # cameras played in real time stay live as over Kafka: never waited for, and
        # their frames dropped once too old to be detected in time
        live=frozenset(c.name for c in settings.cameras if c.realtime),
        live_max_age_s=settings.detect.live_frame_age_s,
        standby=b.standby_processes,
        max_restarts=b.max_restarts,
        metrics=metrics,
    )
    ingest = IngestGroup(settings.cameras, sink=bus.submit, on_end=bus.release, health=metrics)

    def parts() -> dict[str, str]:
        cams = {f"camera-{k}": s.state for k, s in list(ingest.status.items())}
        return {**cams, **bus.parts()}

    for attach_parts in opts.on_parts:
        attach_parts(parts)
    server = serve(metrics, settings.metrics.port, settings.metrics.host)
    try:
        if not stopper.event.is_set():  # a signal while the watchlist loaded
            bus.start(stop=stopper.event)
        if not stopper.event.is_set():
            ingest.start()
            _wait(
                lambda: (
                    bus.failure is not None
                    or (opts.until_done and ingest.done() and bus.outstanding == 0)
                ),
                stopper,
                opts.timeout_s,
            )
    finally:
        ingest.stop.set()
        bus.close()
        ingest.join(5)
        writer.close()
        if watcher is not None:
            watcher.stop_event.set()
        if server is not None:
            server.stop()
    summary = _summary(ingest, writer, started, bus.stats.dropped, bus.stats.failed)
    summary.lost, summary.restarts, summary.error = bus.stats.lost, bus.stats.restarts, bus.failure
    summary.placement, summary.dropped_stale = dict(bus.history), bus.stats.stale
    summary.unfinished = bus.stats.unfinished
    _log_stale(settings, bus.stats.stale)
    return summary


def run_kafka(settings: Settings, opts: RunOptions, stopper: _Stopper) -> RunSummary:
    from sauron.bus.admin import ensure_topics
    from sauron.bus.client import end_offsets
    from sauron.bus.tail import TopicTail
    from sauron.bus.topics import Topics
    from sauron.detect.kafka_worker import DetectProcesses, DetectSignals
    from sauron.ingest.reports import CameraReporter
    from sauron.match.kafka_worker import build_match_worker, topic_namer
    from sauron.match.watchlist_topic import publish_person
    from sauron.metrics import Metrics, serve

    started = time.monotonic()
    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    if settings.match.watchlist is not None:
        for person in _watchlist_people(settings):
            publish_person(settings, person, person.name)
    # Live cameras' frames dropped upstream are marked skipped (stale, queue full), and the
    # writer waits at most a second for any other; files read as fast as possible are
    # never dropped, so their frames are waited for.
    writer = ResultsWriter(
        opts.results, patient={c.name for c in settings.cameras if not c.realtime}
    )

    last_result = [time.monotonic()]
    # bus.annotated_jpeg off: results come without the frame's JPEG, put back from the
    # frames published here for whoever wants pixels (the results file does not)
    jpegs = PublishedJpegs() if opts.on_result and not settings.bus.annotated_jpeg else None
    unrestored = [0]

    def on_result(msg: Any) -> None:
        try:
            result = codec.decode_result(msg.value())
        except codec.CodecError as exc:
            log.warning("annotated frame ignored: %s", exc)
            return
        writer.add(result)
        last_result[0] = time.monotonic()
        if jpegs is not None:
            restored = jpegs.restore(result)
            if restored is None:  # a repeat, or no longer held: the results file has it
                unrestored[0] += 1
                return
            result = restored
        for cb in opts.on_result:
            cb(result)

    def skipped(camera: str, number: int) -> None:
        writer.skip(camera, number)
        if jpegs is not None:
            jpegs.take(camera, number)

    collector = TopicTail(
        settings.bus, topics.annotated, on_result, start=end_offsets(settings.bus, topics.annotated)
    )
    collector.start()
    metrics = Metrics()
    port = settings.metrics.port
    server = serve(metrics, port, settings.metrics.host)
    n = worker_count(opts.processes)
    signals = DetectSignals(n)
    workers = DetectProcesses(
        settings, n, namer=topic_namer, metrics_base=port + 1 if port else 0, signals=signals
    )
    matcher: Any = None
    if not settings.match.in_detect:  # else the detect workers name the faces
        matcher, watch_tail = build_match_worker(settings, metrics=metrics)
        match_thread = threading.Thread(target=matcher.run, name="match", daemon=True)
        match_thread.start()
    placement, members = wait_for_workers(
        settings, signals, counts[topics.frames], matcher, stop=stopper.event
    )
    ready_s = time.monotonic() - started
    ingest_stop = threading.Event()
    producer, sink = kafka_frame_sink(
        settings,
        counts[topics.frames],
        metrics=metrics,
        stop=ingest_stop,
        placement=placement,
        on_drop=lambda f: skipped(f.camera, f.number),
    )
    publish = sink
    if jpegs is not None:

        def publish(frame: Frame) -> None:
            jpegs.keep(frame)
            sink(frame)

    ingest = IngestGroup(settings.cameras, sink=publish, stop=ingest_stop).start()
    reporter = CameraReporter(settings, ingest)  # for a `sauron web` elsewhere
    reporter.start()
    stale = [0]

    def done() -> bool:
        workers.check()  # a detect process that died is replaced, or the run ends
        if workers.failure is not None:
            return True
        for cam, number in signals.drain_stale():
            skipped(cam, number)
            stale[0] += 1
        if not (opts.until_done and ingest.done()):
            return False
        if all(writer.count(c) >= s.frames for c, s in ingest.status.items()):
            return True
        # A frame that went to the dead-letter topic never comes out: give up waiting for
        # the rest once nothing has arrived for a while.
        if time.monotonic() - last_result[0] > IDLE_FINISH_S:
            log.warning(
                "no result for %.0f s after the sources ended; some frames are "
                "missing (see the dead-letter topic)",
                IDLE_FINISH_S,
            )
            return True
        return False

    try:
        _wait(done, stopper, opts.timeout_s)
    finally:
        ingest.stop.set()
        ingest.join(5)
        reporter.stop()
        producer.flush(10)
        workers.stop()
        if matcher is not None:
            matcher.stop_event.set()
            match_thread.join(15)
            watch_tail.stop()
        collector.stop()
        writer.close()
        if server is not None:
            server.stop()
    dead = matcher.stats.dead_letters if matcher is not None else 0
    stale[0] += len(signals.drain_stale())
    summary = _summary(ingest, writer, started, producer.stats.dropped_total + stale[0], dead)
    summary.dropped_stale, summary.ready_s = stale[0], ready_s
    summary.placement, summary.members = placement, members
    summary.restarts, summary.error = workers.restarts, workers.failure
    if unrestored[0]:
        log.warning(
            "%d result(s) came without their frame's JPEG (bus.annotated_jpeg: false) when "
            "it was no longer held here (a repeat, or too far behind): in the results file, "
            "not passed to viewers or the recorder",
            unrestored[0],
        )
    _log_stale(settings, stale[0])
    return summary


def _log_stale(settings: Settings, stale: int) -> None:
    if stale:
        d = settings.detect
        log.info(
            "%d frame(s) dropped as too old (live cameras: detect.live_frame_age_s = %s s; "
            "all: detect.max_frame_age_s = %s s)",
            stale, d.live_frame_age_s, d.max_frame_age_s,
        )  # fmt: skip


def wait_for_workers(
    settings: Settings,
    signals: Any,
    partitions: int,
    matcher: Any = None,
    stop: threading.Event | None = None,
) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Block until the detect workers are ready (models warm, group stable, every frames
    partition assigned), at most ``bus.ready_timeout_s``, or until ``stop`` is set.
    Returns the camera placement (camera -> partition, empty for hash placement or frame
    partitioning) and the group's assignment (member -> partitions, empty if it was not
    reached)."""
    from sauron.bus.ready import spread_cameras, wait_for_assignment
    from sauron.bus.topics import Topics, camera_partition

    t0 = time.monotonic()
    timeout = settings.bus.ready_timeout_s
    stop = stop or threading.Event()
    n = len(signals.ready)
    events = [*signals.ready, *([matcher.ready] if matcher is not None else [])]
    while not stop.is_set() and time.monotonic() - t0 < timeout:
        if all(ev.wait(0.1) for ev in events):
            break
    warm = sum(ev.is_set() for ev in signals.ready)
    got = None
    if not stop.is_set():
        got = wait_for_assignment(
            settings.bus,
            settings.topics.name("detect"),
            Topics.from_config(settings.topics).frames,
            members=n,
            partitions=partitions,
            timeout=max(1.0, timeout - (time.monotonic() - t0)),
            stop=stop,
        )
    if stop.is_set():
        log.info("stopped while the detect workers were starting")
    elif got is None:
        log.warning(
            "detect workers not ready after %.0f s (%d of %d warmed up, not every partition "
            "assigned): starting the cameras anyway, their first frames may wait",
            time.monotonic() - t0, warm, n,
        )  # fmt: skip
    else:
        log.info(
            "detect workers ready after %.1f s: %d member(s) hold the %d partitions",
            time.monotonic() - t0, len(got.members), partitions,
        )  # fmt: skip
    members = {m: list(parts) for m, parts in (got.members if got else {}).items()}
    t = settings.topics
    names = [c.name for c in settings.cameras]
    if t.partitioning != "camera":
        return {}, members
    if t.placement == "spread":
        placement = spread_cameras(names, members, partitions)
    else:
        placement = {c: camera_partition(c, partitions) for c in names}
    log.info("cameras on partitions: %s", placement)
    return placement, members


def kafka_frame_sink(
    settings: Settings,
    partitions: int,
    *,
    metrics: Any = None,
    stop: threading.Event | None = None,
    placement: dict[str, int] | None = None,
    on_drop: Callable[[Frame], None] | None = None,
) -> tuple[Any, Callable[[Frame], None]]:
    """A frame producer and the function that publishes one frame to the frames topic.

    Frames wait in the producer while the brokers are unreachable, at most
    ``bus.producer_buffer_mb`` MiB and ``bus.delivery_timeout_s`` s; then frames of live
    (``realtime``) cameras are dropped and counted (and told to ``on_drop``), files read as
    fast as possible wait. Frames of live cameras are marked so that detect workers drop
    them once older than ``detect.live_frame_age_s``. Both returned values are the same
    :class:`sauron.bus.producer.FrameProducer` (its ``stats`` count what was acknowledged
    and dropped).
    """
    from sauron.bus.producer import FrameProducer

    blocking = {c.name for c in settings.cameras if not c.realtime}
    producer = FrameProducer(
        settings,
        partitions,
        metrics=metrics,
        blocking=blocking,
        stop=stop,
        placement=placement,
        live={c.name for c in settings.cameras if c.realtime},
        on_drop=on_drop,
    )
    return producer, producer


def run_ingest_only(settings: Settings, opts: RunOptions) -> int:
    """``sauron ingest``: publish every camera's frames until the sources end or a signal."""
    from sauron.bus.admin import ensure_topics
    from sauron.bus.topics import Topics
    from sauron.ingest.reports import CameraReporter

    if not settings.cameras:
        raise SauronError("no cameras configured: give --camera NAME=SOURCE or a config file")
    counts = ensure_topics(settings)
    producer, sink = kafka_frame_sink(settings, counts[Topics.from_config(settings.topics).frames])
    ingest = IngestGroup(settings.cameras, sink=sink).start()
    reporter = CameraReporter(settings, ingest)
    reporter.start()
    with _Stopper() as stopper:
        try:
            _wait(ingest.done, stopper, opts.timeout_s)
        finally:
            ingest.stop.set()
            ingest.join(5)
            reporter.stop()
            left = producer.flush(30)
    for cam, st in ingest.status.items():
        log.info(
            "camera %s: %d frames published%s",
            cam,
            st.frames,
            f" (error: {st.error})" if st.error else "",
        )
    if left:
        log.error("%d frames were not acknowledged by Kafka", left)
    return 1 if left or any(s.error for s in ingest.status.values()) else 0


def _watchlist_people(settings: Settings) -> list[codec.Person]:
    from sauron.detect.models import FaceModel
    from sauron.match.enroll import load_watchlist_dir

    assert settings.match.watchlist is not None
    model = FaceModel(detector="dlib-hog", embedder=settings.detect.embedder)
    return load_watchlist_dir(model, settings.match.watchlist, largest=settings.match.largest_face)


def run(settings: Settings, opts: RunOptions) -> RunSummary:
    if not settings.cameras:
        raise SauronError("no cameras configured: give --camera NAME=SOURCE or a config file")
    # from the start: a signal while models or workers load ends the run too
    with _Stopper() as stopper:
        go = run_kafka if settings.bus.type == "kafka" else run_embedded
        summary = go(settings, opts, stopper)
    summary.stopped = stopper.event.is_set()
    return summary
