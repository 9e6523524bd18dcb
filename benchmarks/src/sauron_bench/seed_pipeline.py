"""The seed's way, rebuilt as a baseline (never a product path): measured in the same run.

"The Eye of Sauron" sent every frame as JSON holding the raw pixel array in base64, with
its shape and dtype, flushed the producer after every message and committed the consumer
offset after every message. Its consumers detected and embedded every face of every frame
(no tracking) and published the frame again, as base64 JSON with the encodings, to a
second topic, where predictor processes matched, drew and published the annotated frame,
again as base64 JSON of raw pixels. This module does exactly that over the same broker,
with the same models and the same workload, so the ratio to the pipeline isolates the
wire format and the per-message flush/commit (plus tracking, when the pipeline tracks).

One deliberate difference: the seed used kafka-python, a pure-Python client; this uses
confluent-kafka (librdkafka), which only makes the baseline faster.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing as mp
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sauron.bus.admin import wait_for_leaders
from sauron.bus.topics import camera_partition
from sauron.codec import Person
from sauron.types import Frame
from sauron_bench.measure import Collector, Record
from sauron_bench.product_pipelines import BenchError, Sink, wait_for_group

log = logging.getLogger(__name__)

MAX_BYTES = 10 * 1024 * 1024


def np_to_json(arr: np.ndarray) -> dict[str, Any]:
    """The seed's ``np_to_json``: raw bytes in base64, with shape and dtype."""
    return {
        "frame": base64.b64encode(arr.tobytes()).decode("ascii"),
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
    }


def _np_from_json(d: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(d["frame"])
    return np.frombuffer(raw, np.dtype(d["dtype"])).reshape(d["shape"])


def _client(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **extra}


def _consumer(bootstrap: str, group: str, topic: str) -> Any:
    from confluent_kafka import Consumer

    c = Consumer(
        _client(
            bootstrap,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "max.partition.fetch.bytes": MAX_BYTES,
                "fetch.max.bytes": 8 * MAX_BYTES,
                "session.timeout.ms": 10000,
            },
        )
    )
    c.subscribe([topic])
    return c


def _producer(bootstrap: str) -> Any:
    from confluent_kafka import Producer

    return Producer(_client(bootstrap, **{"message.max.bytes": MAX_BYTES}))


def _seed_loop(
    bootstrap: str, group: str, topic: str, out_topic: str
) -> Iterator[tuple[float, dict[str, Any], np.ndarray, Callable[[dict[str, Any]], None]]]:
    """The seed's consumer loop until SIGTERM: for each message, when its handling began,
    its JSON, its pixels and ``send``, which publishes the answer to ``out_topic`` on the
    same partition, flushes and commits the message, every time (as the seed did)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = _consumer(bootstrap, group, topic)
    producer = _producer(bootstrap)
    try:
        while not stop.is_set():
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            t0 = time.perf_counter()
            d = json.loads(msg.value())

            def send(out: dict[str, Any], msg: Any = msg, key: str = d["camera"]) -> None:
                producer.produce(
                    out_topic, key=key, value=json.dumps(out), partition=msg.partition()
                )
                producer.flush()
                consumer.commit(message=msg, asynchronous=False)

            yield t0, d, _np_from_json(d), send
    finally:
        consumer.close()


def _detect_main(bootstrap: str, topics: dict[str, str], group: str, embedder: str) -> None:
    """A seed consumer process: JSON frame in, detect + embed every face, JSON out."""
    from sauron.detect.models import FaceModel
    from sauron.imaging import bgr_to_rgb

    model = FaceModel(detector="dlib-hog", embedder=embedder)
    for t0, d, pixels, send in _seed_loop(bootstrap, group, topics["frames"], topics["processed"]):
        rgb = bgr_to_rgb(pixels)
        t1 = time.perf_counter()
        det, shapes = model.locate(rgb)
        t2 = time.perf_counter()
        enc = model.embed(rgb, shapes)
        t3 = time.perf_counter()
        out = {
            "camera": d["camera"],
            "number": d["number"],
            "ts": d["ts"],
            **np_to_json(pixels),
            "boxes": det.xyxy.tolist(),
            "encodings": enc.tolist(),
            "timings": {
                "decode": (t1 - t0) * 1e3,
                "detect": (t2 - t1) * 1e3,
                "embed": (t3 - t2) * 1e3,
            },
        }
        send(out)


def _predict_main(
    bootstrap: str, topics: dict[str, str], group: str, people: list[Person], tolerance: float
) -> None:
    """The seed's predictor process: JSON in, match + draw, JSON of annotated pixels out."""
    from sauron.match.stage import draw
    from sauron.match.watchlist import Watchlist
    from sauron.types import Detections

    watchlist = Watchlist(people)
    for t0, d, pixels, send in _seed_loop(
        bootstrap, group, topics["processed"], topics["annotated"]
    ):
        enc = np.asarray(d["encodings"], np.float32).reshape(-1, 128)
        names, dists = watchlist.match(enc, tolerance)
        t1 = time.perf_counter()
        n = len(enc)
        det = Detections(
            xyxy=np.asarray(d["boxes"], np.int32).reshape(n, 4),
            confidence=np.zeros(n, np.float32),
            landmarks=np.zeros((n, 5, 2), np.float32),
            embeddings=enc,
            names=tuple(names),
            distances=dists,
        )
        out = {
            "camera": d["camera"],
            "number": d["number"],
            "ts": d["ts"],
            **np_to_json(draw(pixels, det)),
            "names": names,
            "timings": {**d["timings"], "match": (t1 - t0) * 1e3},
        }
        out["timings"]["draw"] = (time.perf_counter() - t1) * 1e3
        send(out)


@dataclass(eq=False)
class SeedPipeline:
    """Seed consumers and a seed predictor (processes), and a viewer (thread).

    Every frame is published before the consumers start (``preload``): the seed's
    producers ran on the camera machines, so their cost is not the consumers' to pay.
    """

    name = "seed"
    preload = True

    bootstrap: str
    workers: int
    partitions: int
    people: list[Person]
    embedder: str
    tolerance: float = 0.6
    topics: dict[str, str] = field(init=False)
    group: str = field(init=False)
    collector: Collector = field(default_factory=Collector, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _procs: list[Any] = field(default_factory=list, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _producers: list[Any] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        prefix = f"seed-{uuid.uuid4().hex[:10]}"
        self.topics = {k: f"{prefix}.{k}" for k in ("frames", "processed", "annotated")}
        self.group = f"{prefix}.detect"

    def prepare(self) -> None:
        """Create the topics (before the frames are published)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(_client(self.bootstrap))
        conf = {"max.message.bytes": str(MAX_BYTES)}
        futures = admin.create_topics(
            [
                NewTopic(t, num_partitions=self.partitions, replication_factor=1, config=conf)
                for t in self.topics.values()
            ],
            operation_timeout=30,
        )
        for fut in futures.values():
            fut.result()
        if not wait_for_leaders(admin, list(self.topics.values()), 30.0):
            raise BenchError(f"topics {list(self.topics.values())} have no leaders after 30 s")

    def start(self) -> SeedPipeline:
        ctx = mp.get_context("spawn")
        self._procs = [
            ctx.Process(
                target=_detect_main,
                name=f"seed-detect-{i}",
                daemon=True,
                args=(self.bootstrap, self.topics, self.group, self.embedder),
            )
            for i in range(self.workers)
        ]
        self._procs.append(
            ctx.Process(
                target=_predict_main,
                name="seed-predict",
                daemon=True,
                args=(
                    self.bootstrap,
                    self.topics,
                    f"{self.group}-predict",
                    self.people,
                    self.tolerance,
                ),
            )
        )
        for p in self._procs:
            p.start()
        t = threading.Thread(target=self._collect, name="seed-view", daemon=True)
        t.start()
        self._threads.append(t)
        wait_for_group(self.bootstrap, self.group, min(self.workers, self.partitions))
        return self

    def _collect(self) -> None:
        """The viewer: reads annotated frames back into pixels."""
        consumer = _consumer(self.bootstrap, f"{self.group}-view", self.topics["annotated"])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                d = json.loads(msg.value())
                _np_from_json(d)
                self.collector.add(
                    Record(
                        d["camera"],
                        int(d["number"]),
                        float(d["ts"]),
                        time.time(),
                        d["timings"],
                        tuple(d["names"]),
                    )
                )
                consumer.commit(message=msg, asynchronous=False)
        finally:
            consumer.close()

    def sink_factory(self) -> Sink:
        """Each camera gets its own producer and flushes after every frame, as the seed."""
        from sauron.imaging import decode_jpeg

        producer = _producer(self.bootstrap)
        self._producers.append(producer)
        topic, parts = self.topics["frames"], self.partitions

        def sink(frame: Frame) -> None:
            pixels = decode_jpeg(frame.jpeg)  # a camera hands over raw pixels
            msg = {
                "camera": frame.camera,
                "number": frame.number,
                "ts": frame.captured_at,
                **np_to_json(pixels),
            }
            producer.produce(
                topic,
                key=frame.camera,
                value=json.dumps(msg),
                partition=camera_partition(frame.camera, parts),
            )
            producer.flush()

        return sink

    def close(self) -> None:
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join(5)
        self._stop.set()
        for t in self._threads:
            t.join(10)
        for producer in self._producers:
            producer.flush(5)
        self._producers.clear()
