"""``sauron worker detect``: the detect stage as a Kafka consumer-group member."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
from typing import Any

from sauron import codec
from sauron.bus.kafka import Output, StageWorker
from sauron.bus.topics import Topics, frame_partition
from sauron.config import Settings
from sauron.detect.stage import DetectStage

log = logging.getLogger(__name__)



def detect_handler(settings: Settings, stage: DetectStage, partitions: int) -> Any:
    topics = Topics.from_config(settings.topics)
    mode = settings.topics.partitioning

    def handle(value: bytes) -> list[Output]:
        frame = codec.decode_frame(value)
        det, timings = stage.process(frame)
        return [Output(topics.detections, codec.encode_detections(frame, det, timings),
                       key=frame.camera,
                       partition=frame_partition(frame.camera, frame.number, partitions, mode))]

    return handle


def tracking_enabled(settings: Settings) -> bool:
    return settings.detect.tracking and settings.topics.partitioning == "camera"


def run_detect_worker(settings: Settings, *, group: str | None = None) -> None:
    """One detect worker in this process until SIGTERM/SIGINT."""
    from sauron.bus.kafka import ensure_topics

    counts = ensure_topics(settings)
    topics = Topics.from_config(settings.topics)
    stage = DetectStage(settings.detect, tracking=tracking_enabled(settings))
    worker = StageWorker(settings, topic=topics.frames, name="detect",
                         group=group or settings.topics.name("detect"),
                         handler=detect_handler(settings, stage, counts[topics.detections]),
                         batch_size=settings.detect.batch_size)
    _stop_on_signals(worker.stop_event)
    worker.run()


def _stop_on_signals(event: Any) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch and leaving the group", signum)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _process_main(settings_json: str, group: str | None) -> None:
    from sauron.cli import setup_logging

    setup_logging()
    run_detect_worker(Settings.model_validate_json(settings_json), group=group)


def spawn_detect_workers(settings: Settings, n: int, *, group: str | None = None
                         ) -> list[Any]:
    """Start ``n`` detect worker processes (one core each); returns the processes."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_process_main, args=(settings.model_dump_json(), group),
                         name=f"sauron-detect-{i}", daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    return procs
