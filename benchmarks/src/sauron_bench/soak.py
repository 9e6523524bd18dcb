"""Soak: the Kafka pipeline fed above its capacity for minutes; memory and drop counters.

    python -m sauron_bench.soak --minutes 10 --json soak.json [--bootstrap HOST:PORT]

1. A broker is started for the run (``scripts/kafka-broker``) unless one is given; detect
   workers run as processes (each serving /metrics), the match worker in this process.
2. Calibration: frames are fed far above what the workers can do; with the stay-live policy
   (``detect.max_frame_age_s``) the detect stage then runs flat out, and the rate of frames
   it completes is its capacity.
3. Soak: live cameras feed ``--overload`` (default 1.2) times that capacity for
   ``--minutes``. Every ``--sample-s`` seconds the resident memory of every Sauron process
   (and the broker) and every worker's counters (scraped from its /metrics) are recorded.
4. Drain and account: once the feed stops and the workers caught up, every frame the
   cameras published must be accounted for exactly: detected + dropped as stale + dead
   letters = frames read by the detect stage = frames acknowledged by the brokers, and
   what the match stage completed equals what came out of the annotated topic.

The JSON holds the settings, the capacity, the series and the checks (``memory_flat``,
``counters_honest``). CI does not run this; docs/reliability.md records a 10-minute run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sauron import codec
from sauron.config import Settings, load_settings
from sauron.logs import setup_logging
from sauron.metrics import Metrics
from sauron.types import Frame
from sauron_bench.broker import LocalBroker
from sauron_bench.probes import counter, free_ports, rss_mb, scrape
from sauron_bench.workload import camera_names, make_workload

log = logging.getLogger(__name__)


class Feed(threading.Thread):
    """Live cameras at a total rate (frames/s), through the bounded frame producer."""

    def __init__(self, producer: Any, work: Any, cameras: list[str], fps: float) -> None:
        super().__init__(daemon=True, name="soak-feed")
        self.producer = producer
        self.work = work
        self.cameras = cameras
        self.fps = fps
        self.stop = threading.Event()
        self.next = dict.fromkeys(cameras, 0)

    def run(self) -> None:
        t0 = time.monotonic()
        i = 0
        while not self.stop.is_set():
            cam = self.cameras[i % len(self.cameras)]
            n = self.next[cam]
            self.next[cam] = n + 1
            idx = self.cameras.index(cam)
            self.producer.publish(Frame(cam, n, time.time(), self.work.jpeg(idx, n)))
            i += 1
            delay = t0 + i / self.fps - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)


class Soak:
    def __init__(self, args: argparse.Namespace, bootstrap: str, broker_pid: int | None) -> None:
        self.args = args
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        if not args.metrics_port:
            args.metrics_port = free_ports(args.workers)
        self.ports = [args.metrics_port + i for i in range(args.workers)]
        self.settings = self._settings()
        self.metrics = Metrics()
        # Bounded bookkeeping (the pipeline process's memory is part of what is measured):
        # a camera's annotated frames arrive in frame order (camera partitioning), so a
        # number not above the camera's last one is a repeat; latencies go to a histogram.
        self.out_count = 0
        self.duplicates = 0
        self.last: dict[str, int] = {}
        self.latency = Counter[int]()
        self.lock = threading.Lock()
        self.base_matched = 0.0
        self._numbers = 0

    def _settings(self) -> Settings:
        a = self.args
        return load_settings(None, {
            "bus": {"type": "kafka", "bootstrap_servers": self.bootstrap},
            "topics": {"prefix": f"soak{int(time.time())}", "partitions": a.cameras},
            "detect": {"max_frame_age_s": a.max_age, "embedder": a.embedder},
            "match": {"draw": True, "in_detect": False},  # as docs/reliability.md measured
        })  # fmt: skip

    def _on_annotated(self, msg: Any) -> None:
        result = codec.decode_result(msg.value())
        cam, num = result.frame.camera, result.frame.number
        with self.lock:
            if num <= self.last.get(cam, -1):
                self.duplicates += 1
                return
            self.last[cam] = num
            self.out_count += 1
            self.latency[int((time.time() - result.frame.captured_at) * 100)] += 1

    def _scrape_all(self) -> list[dict[str, float]]:
        return [scrape(p) for p in self.ports]

    def _done(self, samples: list[dict[str, float]]) -> float:
        return counter(samples, 'sauron_frames_out_total{stage="detect"}')

    def run(self) -> dict[str, Any]:
        from sauron.bus.admin import ensure_topics
        from sauron.bus.producer import FrameProducer
        from sauron.bus.tail import TopicTail
        from sauron.bus.topics import Topics
        from sauron.detect.kafka_worker import DetectProcesses
        from sauron.match.kafka_worker import build_match_worker, topic_namer

        a = self.args
        work = make_workload(clips=2, frames=60, size=(640, 360))
        counts = ensure_topics(self.settings)
        topics = Topics.from_config(self.settings.topics)
        cameras = camera_names(a.cameras, counts[topics.frames])
        procs = DetectProcesses(
            self.settings, a.workers, namer=topic_namer, metrics_base=a.metrics_port
        ).procs
        matcher, watch_tail = build_match_worker(self.settings, metrics=self.metrics)
        match_thread = threading.Thread(target=matcher.run, name="soak-match", daemon=True)
        match_thread.start()
        tail = TopicTail(self.settings.bus, topics.annotated, self._on_annotated)
        tail.start()
        producer = FrameProducer(self.settings, counts[topics.frames], metrics=self.metrics)
        try:
            self._wait_ready()
            capacity = self._calibrate(producer, work, cameras)
            result = self._soak(producer, work, cameras, capacity, procs)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(30)
            matcher.stop_event.set()
            match_thread.join(30)
            watch_tail.stop()
            tail.stop()
        return result

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                samples = self._scrape_all()
                if all(s.get('sauron_assigned_partitions{stage="detect"}', 0) for s in samples):
                    return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError("detect workers did not start within 180 s")

    def _measure(
        self, producer: Any, work: Any, cameras: list[str], fps: float
    ) -> tuple[float, float]:
        """Feed ``fps`` for ``calibrate_s``: (frames/s completed, fraction dropped stale)."""
        a = self.args
        feed = Feed(producer, work, cameras, fps)
        feed.next = {c: n + self._numbers for c, n in feed.next.items()}
        self._numbers += 1_000_000
        feed.start()
        time.sleep(a.calibrate_s / 3)  # warm up: models, tracks, the backlog
        s0, t0 = self._scrape_all(), time.monotonic()
        time.sleep(a.calibrate_s * 2 / 3)
        s1, t1 = self._scrape_all(), time.monotonic()
        feed.stop.set()
        feed.join(10)
        producer.flush(60)
        done = self._done(s1) - self._done(s0)
        stale_key = 'sauron_frames_dropped_total{reason="stale"'
        stale = counter(s1, stale_key) - counter(s0, stale_key)
        if not self._settle():  # the backlog goes stale and drains before the next step
            raise RuntimeError("the calibration backlog did not drain within 300 s")
        rate = done / (t1 - t0)
        frac = stale / max(1.0, stale + done)
        log.info("calibration: fed %.1f/s, completed %.1f/s, %.1f%% stale", fps, rate, 100 * frac)
        return rate, frac

    def _calibrate(self, producer: Any, work: Any, cameras: list[str]) -> float:
        """The detect stage's capacity: the highest rate it completes while fed just above
        it (flooding it far above under-reads it: skipping stale frames costs too)."""
        rate, _ = self._measure(producer, work, cameras, self.args.calibrate_fps)
        for _ in range(4):
            got, stale = self._measure(producer, work, cameras, rate * 1.15)
            rate = max(rate, got)
            if stale > 0.02:  # it could not keep up with 1.15x: rate is the capacity
                break
        log.info("calibration: capacity %.1f frames/s", rate)
        return rate

    def _soak(
        self, producer: Any, work: Any, cameras: list[str], capacity: float, procs: list[Any]
    ) -> dict[str, Any]:
        a = self.args
        base = self._scrape_all()
        base_ingest = (producer.stats.acked, producer.stats.dropped_total)
        with self.lock:
            base_annotated = self.out_count
            base_dupes = self.duplicates
            self.latency.clear()
        self.base_matched = self.metrics.value("sauron_frames_out_total", stage="match")
        pids = {"pipeline": os.getpid(), **{f"detect-{i}": p.pid for i, p in enumerate(procs)}}
        if self.broker_pid:
            pids["broker"] = self.broker_pid
        feed = Feed(producer, work, cameras, capacity * a.overload)
        # Continue each camera's frame numbers after the calibration's.
        feed.next = {c: n + self._numbers for c, n in feed.next.items()}
        series: list[dict[str, Any]] = []
        t0 = time.monotonic()
        feed.start()
        end = t0 + a.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(a.sample_s, max(0.0, end - time.monotonic())))
            s = self._scrape_all()
            series.append({
                "t_s": round(time.monotonic() - t0, 1),
                "rss_mb": {k: round(v, 1) for k, p in pids.items()
                           if (v := rss_mb(p)) is not None},
                "detect_in": counter(s, 'sauron_frames_in_total{stage="detect"}')
                - counter(base, 'sauron_frames_in_total{stage="detect"}'),
                "detect_done": self._done(s) - self._done(base),
                "dropped_stale": counter(s, "sauron_frames_dropped_total{reason=\"stale\"")
                - counter(base, "sauron_frames_dropped_total{reason=\"stale\""),
                "lag": counter(s, "sauron_consumer_lag{"),
                "published": producer.stats.acked - base_ingest[0],
            })  # fmt: skip
            log.info("soak %s", json.dumps(series[-1]))
        feed.stop.set()
        feed.join(10)
        left = producer.flush(60)
        drained = self._settle()
        return self._account(
            capacity,
            series,
            base,
            base_ingest,
            (base_annotated, base_dupes),
            producer,
            left,
            drained,
        )

    def _settle(self, timeout: float = 300) -> bool:
        """Wait until the workers read everything and nothing moves any more (bounded)."""
        deadline = time.monotonic() + timeout
        last: tuple[float, ...] = ()
        while time.monotonic() < deadline:
            smp = self._scrape_all()
            with self.lock:
                out = self.out_count
            now = (
                counter(smp, "sauron_frames_in_total"),
                self.metrics.value("sauron_frames_out_total", stage="match"),
                float(out),
            )
            if counter(smp, "sauron_consumer_lag{") == 0 and now == last:
                return True
            last = now
            time.sleep(3)
        return False

    def _account(
        self,
        capacity: float,
        series: list[dict[str, Any]],
        base: list[dict[str, float]],
        base_ingest: tuple[int, int],
        base_out: tuple[int, int],
        producer: Any,
        left: int,
        drained: bool,
    ) -> dict[str, Any]:
        a = self.args
        s = self._scrape_all()

        def delta(prefix: str) -> int:
            return round(counter(s, prefix) - counter(base, prefix))

        published = producer.stats.acked - base_ingest[0]
        ingest_dropped = producer.stats.dropped_total - base_ingest[1]
        detect_in = delta('sauron_frames_in_total{stage="detect"}')
        detected = delta('sauron_frames_out_total{stage="detect"}')
        stale = delta('sauron_frames_dropped_total{reason="stale"')
        dead = delta("sauron_dead_letters_total{")
        with self.lock:
            annotated = self.out_count - base_out[0]
            dupes = self.duplicates - base_out[1]
            lat = sorted(self.latency.elements())
        matched = self.metrics.value("sauron_frames_out_total", stage="match") - self.base_matched
        rss = {k: [row["rss_mb"].get(k) for row in series] for k in series[0]["rss_mb"]}
        mem = {k: _growth(v, a.sample_s) for k, v in rss.items()}
        sauron_mem = {k: v for k, v in mem.items() if k != "broker"}
        honest = (
            detect_in == published
            and detected + stale + dead == detect_in
            and annotated == detected
            and left == 0
        )
        return {
            "settings": {
                "minutes": a.minutes, "workers": a.workers, "cameras": a.cameras,
                "overload": a.overload, "max_frame_age_s": a.max_age, "embedder": a.embedder,
                "frame_size": "640x360", "policy": "stay live: drop frames older than "
                f"{a.max_age} s (detect.max_frame_age_s)",
            },
            "machine": {"cores": os.cpu_count()},
            "capacity_fps": round(capacity, 2),
            "feed_fps": round(capacity * a.overload, 2),
            "totals": {
                "published": published, "ingest_dropped": ingest_dropped,
                "detect_in": detect_in, "detected": detected, "dropped_stale": stale,
                "dead_letters": dead, "matched": round(matched), "annotated_out": annotated,
                "annotated_duplicates": dupes, "unflushed": left, "drained": drained,
                "drop_ratio": round(stale / detect_in, 4) if detect_in else None,
                "expected_drop_ratio": round(1 - 1 / a.overload, 4),
            },
            "latency_s": _pcts(lat),
            "memory": mem,
            "checks": {
                "memory_flat": all(m["flat"] for m in sauron_mem.values()),
                "counters_honest": honest,
            },
            "series": series,
        }  # fmt: skip


def _pcts(centis: list[int]) -> dict[str, float | None]:
    """Percentiles of sorted latencies in hundredths of a second (10 ms resolution)."""
    if not centis:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": centis[len(centis) // 2] / 100,
        "p95": centis[int(len(centis) * 0.95)] / 100,
        "max": centis[-1] / 100,
    }


def _growth(values: list[float | None], sample_s: float) -> dict[str, Any]:
    """First vs last fifth of the run (after the first fifth's warm-up) and a slope."""
    vals = [v for v in values if v is not None]
    if len(vals) < 5:
        return {"samples": len(vals), "flat": True}
    k = max(1, len(vals) // 5)
    early = statistics.mean(vals[k : 2 * k])
    late = statistics.mean(vals[-k:])
    xs = [i * sample_s / 60 for i in range(len(vals))]
    slope = statistics.linear_regression(xs[k:], vals[k:]).slope if len(vals) - k > 1 else 0.0
    growth = late - early
    return {
        "start_mb": round(vals[0], 1), "early_mb": round(early, 1), "late_mb": round(late, 1),
        "max_mb": round(max(vals), 1), "growth_mb": round(growth, 1),
        "slope_mb_per_min": round(slope, 2),
        "flat": growth <= max(25.0, 0.1 * early),
    }  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sauron_bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--bootstrap", help="a running broker (default: start one for the run)")
    p.add_argument("--workers", type=int, default=2, help="detect worker processes")
    p.add_argument("--cameras", type=int, default=4, help="cameras (= partitions)")
    p.add_argument("--overload", type=float, default=1.2, help="feed rate / capacity")
    p.add_argument("--max-age", type=float, default=2.0, help="detect.max_frame_age_s")
    p.add_argument("--embedder", default="auto", help="face embedder (auto, onnx, dlib)")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--calibrate-s", type=float, default=30.0, help="each calibration step")
    p.add_argument("--calibrate-fps", type=float, default=120.0, help="calibration feed")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="worker i serves port+i (0: free ports)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    # SIGTERM unwinds like Ctrl-C, so the run's broker and workers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.bootstrap:
        result = Soak(args, args.bootstrap, None).run()
    else:
        with LocalBroker() as broker:
            result = Soak(args, broker.bootstrap, broker.pid).run()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: result[k] for k in ("capacity_fps", "feed_fps", "totals", "memory", "checks")}
    print(json.dumps(summary, indent=2))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
