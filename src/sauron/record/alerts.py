"""Alert delivery: each new alert fanned out to every sink.

What makes an alert (one per appearance of a watched person on a camera) lives in
``match/appearances.py``; the recorder stores it and hands its event to the
:class:`AlertDispatcher` here.

Sinks: the Kafka alerts topic ``<prefix>.alerts`` (JSON, ``{"v": 1, ...}``, key = camera;
the web servers relay it to their pages) or, with the embedded bus, the functions that
subscribed in this process (the web app's pages); when configured, a webhook that
receives the same JSON by POST, and MQTT (``record/mqtt.py``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ALERT_SCHEMA_VERSION = 1


class Webhook(threading.Thread):
    """POSTs alert JSON to a URL from a background thread, with a bounded queue."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, retries: int = 2) -> None:
        super().__init__(name="alert-webhook", daemon=True)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, but got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(1000)
        self.sent = 0
        self.failed = 0

    def submit(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.failed += 1
            log.warning("webhook queue full, alert %s not sent", event.get("id"))

    def _post(self, event: dict[str, Any]) -> bool:
        body = json.dumps(event).encode()
        req = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return True
            except (urllib.error.URLError, OSError) as exc:
                log.warning("webhook %s: attempt %d failed: %s", self.url, attempt + 1, exc)
        return False

    def run(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            if self._post(event):
                self.sent += 1
            else:
                self.failed += 1

    def stop(self) -> None:
        self.queue.put(None)


Sink = Callable[[dict[str, Any]], None]


class AlertDispatcher:
    """Sends every new alert to Kafka or this process's subscribers, the webhook and the
    other sinks (those configured)."""

    def __init__(
        self,
        *,
        webhook: Webhook | None = None,
        kafka: Sink | None = None,
        sinks: list[Sink] | None = None,
    ) -> None:
        self.webhook = webhook
        self.kafka = kafka
        self.sinks = list(sinks or [])  # always fed (MQTT)
        self._local: list[Sink] = []  # fed when there is no Kafka topic to relay
        self.sent = 0

    def subscribe(self, sink: Sink) -> None:
        """Also hand every alert to ``sink`` in this process (the web app's pages); over
        Kafka the web servers read the alerts topic instead."""
        self._local.append(sink)

    def publish(self, event: dict[str, Any]) -> None:
        event = {"v": ALERT_SCHEMA_VERSION, "type": "alert", **event}
        self.sent += 1
        if self.kafka is not None:
            try:
                self.kafka(event)
            except Exception:  # a broker hiccup must not stop pages and webhook
                log.exception("alert %s not published to Kafka", event.get("id"))
        else:
            for sink in self._local:
                sink(event)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # one sink's failure must not stop the others
                log.exception("alert %s not handed to %r", event.get("id"), sink)
        if self.webhook is not None:
            self.webhook.submit(event)

    def close(self) -> None:
        if self.webhook is not None and self.webhook.is_alive():
            self.webhook.stop()
            self.webhook.join(10)


def kafka_alert_sink(settings: Any) -> Callable[[dict[str, Any]], None]:
    """Publishes alert events to ``<prefix>.alerts`` (created if missing)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from sauron.bus.client import client_config, make_producer

    topic = settings.topics.name("alerts")
    admin = AdminClient(client_config(settings.bus))
    if topic not in admin.list_topics(timeout=settings.bus.connect_timeout_s).topics:
        for fut in admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=settings.topics.replication,
                    config={"retention.ms": str(30 * 86_400_000)},
                )
            ]
        ).values():
            try:
                fut.result()
            except Exception as exc:  # created meanwhile by another server
                log.debug("alerts topic: %s", exc)
    producer = make_producer(settings.bus)

    def send(event: dict[str, Any]) -> None:
        producer.produce(topic, key=str(event["camera"]), value=json.dumps(event).encode())
        producer.poll(0)

    return send
