"""Alert delivery: each new alert fanned out to every sink.

What makes an alert (one per appearance of a watched person on a camera) lives in
``match/appearances.py``; the recorder stores it and hands its event to the
:class:`AlertDispatcher` here.

Sinks: the Kafka alerts topic ``<prefix>.alerts`` (JSON, ``{"v": 1, ...}``, key = camera;
the web servers relay it to their pages) or, with the embedded bus, the functions that
subscribed in this process (the web app's pages); when configured, a webhook that
receives the same JSON by POST. MQTT hears of appearances from the recorder itself
(``record/mqtt.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from sauron.config import AlertsConfig
from sauron.queues import Empty, LatestQueue, QueueClosed

log = logging.getLogger(__name__)

ALERT_SCHEMA_VERSION = 1


class Webhook(threading.Thread):
    """POSTs alert JSON to a URL from a background thread (httpx), oldest first.

    A failed POST (no connection, a timeout, a 5xx or 429 answer) is tried again after
    ``backoff_s``, doubling up to ``max_backoff_s``, at most ``retries`` more times; any
    other answer is final. Events wait in a queue of ``queue_size``: when it is full the
    oldest is dropped, counted in ``failed`` and logged."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        queue_size: int = 1000,
    ) -> None:
        super().__init__(name="alert-webhook", daemon=True)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, but got {url!r}")
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.queue: LatestQueue[dict[str, Any]] = LatestQueue(queue_size)
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)
        self._halt = threading.Event()
        self.sent = 0
        self.failed = 0

    def submit(self, event: dict[str, Any]) -> None:
        for old in self.queue.put(event):
            self.failed += 1
            if old is event:  # stopped: nothing is sent any more
                log.warning("webhook %s: stopped, alert %s not sent", self.url, old.get("id"))
                continue
            log.warning(
                "webhook %s: %d alerts wait, the oldest (%s) is dropped",
                self.url,
                self.queue.maxsize,
                old.get("id"),
            )

    def _post(self, event: dict[str, Any]) -> bool:
        wait = self.backoff_s
        for attempt in range(self.retries + 1):
            if attempt:
                if self._halt.wait(wait):  # stopping: no more waiting
                    return False
                wait = min(wait * 2, self.max_backoff_s)
            try:
                resp = self.client.post(self.url, json=event)
            except httpx.HTTPError as exc:
                log.warning("webhook %s: attempt %d failed: %s", self.url, attempt + 1, exc)
                continue
            if resp.is_success:
                return True
            if resp.status_code != 429 and resp.status_code < 500:
                log.warning(
                    "webhook %s: alert %s refused with HTTP %d",
                    self.url, event.get("id"), resp.status_code,
                )  # fmt: skip
                return False
            log.warning(
                "webhook %s: attempt %d answered HTTP %d", self.url, attempt + 1, resp.status_code
            )
        return False

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                try:
                    event = self.queue.get(timeout=0.5)
                except Empty:
                    continue
                except QueueClosed:
                    return
                if self._post(event):
                    self.sent += 1
                else:
                    self.failed += 1
                    log.error("webhook %s: alert %s not delivered", self.url, event.get("id"))
        finally:
            self.client.close()

    def stop(self) -> None:
        """Deliver what is queued, then stop (at once if the queue is full)."""
        if self.queue.full:
            self.abort()
        self.queue.close()

    def abort(self) -> None:
        """Stop now: no more retrying, what is queued is left (an unreachable URL no
        longer holds up the stop)."""
        self._halt.set()


Sink = Callable[[dict[str, Any]], None]


def webhook_from(cfg: AlertsConfig) -> Webhook | None:
    """The webhook the ``alerts`` settings ask for, or None."""
    if cfg.webhook_url is None:
        return None
    return Webhook(
        cfg.webhook_url,
        timeout_s=cfg.webhook_timeout_s,
        retries=cfg.webhook_retries,
        queue_size=cfg.webhook_queue_size,
    )


class AlertDispatcher:
    """Sends every new alert to Kafka or this process's subscribers, and to the webhook
    (those configured)."""

    def __init__(self, *, webhook: Webhook | None = None, kafka: Sink | None = None) -> None:
        self.webhook = webhook
        self.kafka = kafka
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
        if self.webhook is not None:
            self.webhook.submit(event)

    def close(self, timeout: float = 10.0) -> None:
        if self.webhook is not None and self.webhook.is_alive():
            self.webhook.stop()
            self.webhook.join(timeout)
            if self.webhook.is_alive():
                self.webhook.abort()
                self.webhook.join(timeout)


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
