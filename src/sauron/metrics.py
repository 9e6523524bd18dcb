"""Prometheus metrics and a health endpoint for one Sauron process.

Each process (a detect worker, a match worker, ``sauron run``'s main process) owns one
:class:`Metrics`: a private registry holding every metric family, labelled by ``stage``
(``ingest``, ``detect``, ``match``). :func:`serve` exposes it over HTTP::

    GET /metrics   Prometheus text format
    GET /healthz   JSON; 200 when every component of the process is live, 503 otherwise

A component is live while its loop keeps turning: it has started, has not stopped or
failed, and last reported within ``stall_s`` seconds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from sauron import SauronError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
PROCESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

M = TypeVar("M", bound=MetricWrapperBase)


class Metrics:
    """Every metric family of one process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()

        def family(kind: type[M], name: str, doc: str, *labels: str, **options: Any) -> M:
            """A family in this registry, labelled by stage and then by ``labels``."""
            return kind(name, doc, ["stage", *labels], registry=self.registry, **options)

        self.frames_in = family(Counter, "sauron_frames_in", "Messages read from the stage's input")
        self.frames_out = family(
            Counter,
            "sauron_frames_out",
            "Inputs fully handled: outputs acknowledged (or committed, exactly-once)",
        )
        self.messages_out = family(
            Counter, "sauron_messages_out", "Messages produced, by topic", "topic"
        )
        self.errors = family(
            Counter,
            "sauron_errors",
            "Errors, by kind (delivery, transaction, consumer, ...)",
            "kind",
        )
        self.dead_letters = family(
            Counter,
            "sauron_dead_letters",
            "Inputs sent to the dead-letter topic, by reason",
            "reason",
        )
        self.dropped = family(
            Counter,
            "sauron_frames_dropped",
            "Frames dropped on purpose, by reason (stale, buffer_full, "
            "delivery_timeout, too_large)",
            "reason",
        )
        self.latency = family(
            Histogram,
            "sauron_frame_latency_seconds",
            "Capture time to output of the stage",
            buckets=LATENCY_BUCKETS,
        )
        self.process_time = family(
            Histogram, "sauron_process_seconds", "Time to handle one input", buckets=PROCESS_BUCKETS
        )
        self.lag = family(
            Gauge,
            "sauron_consumer_lag",
            "Messages behind the end of each assigned input partition",
            "topic",
            "partition",
        )
        self.assigned = family(
            Gauge, "sauron_assigned_partitions", "Input partitions assigned to this worker"
        )
        self.buffered = family(
            Gauge, "sauron_producer_buffered", "Messages waiting in the producer for the brokers"
        )
        self.health = Health()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 if absent), e.g. for tests and benchmarks."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else float(got)


@dataclass
class Component:
    """Liveness of one loop in a process (a stage worker, a camera producer)."""

    name: str
    state: str = "starting"
    last_beat: float = field(default_factory=time.monotonic)
    detail: dict[str, Any] = field(default_factory=dict)

    def beat(self, **detail: Any) -> None:
        self.state = "running"
        self.last_beat = time.monotonic()
        self.detail.update(detail)


class Health:
    """The components of a process; healthy when each is running and beat recently."""

    def __init__(self, stall_s: float = 30.0) -> None:
        self.stall_s = stall_s
        self._components: dict[str, Component] = {}
        self._lock = threading.Lock()

    def component(self, name: str) -> Component:
        with self._lock:
            return self._components.setdefault(name, Component(name))

    def report(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            comps = list(self._components.values())
        body: dict[str, Any] = {}
        ok = bool(comps)
        for c in comps:
            age = now - c.last_beat
            live = c.state == "running" and age <= self.stall_s
            ok = ok and live
            body[c.name] = {
                "state": c.state,
                "live": live,
                "since_beat_s": round(age, 3),
                **c.detail,
            }
        return ok, {"status": "ok" if ok else "unhealthy", "components": body}


class MetricsServer:
    """A small HTTP server thread serving ``/metrics`` and ``/healthz`` of one Metrics."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        handler = _handler_for(metrics)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.host = str(self._httpd.server_address[0])
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"metrics-{self.port}", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics and /healthz", self.host, self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path in ("/healthz", "/health"):
                ok, body = metrics.health.report()
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, data: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler


def serve(metrics: Metrics, port: int, host: str = "127.0.0.1") -> MetricsServer | None:
    """Start the server on ``port`` (0 = off, returns None)."""
    if port <= 0:
        return None
    try:
        return MetricsServer(metrics, host, port).start()
    except OSError as exc:
        raise SauronError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
