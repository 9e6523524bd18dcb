"""Alerts on the open web pages: a :class:`Broadcaster` hands each alert event (from the
record stage in this process, or the Kafka alerts topic) to every server-sent-events
client. Delivery to Kafka, webhooks and MQTT is the record stage's
(``record/alerts.py``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class Broadcaster:
    """Hands events from any thread to every subscribed asyncio queue (SSE clients)."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subs: dict[asyncio.Queue[dict[str, Any]], asyncio.AbstractEventLoop] = {}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """Call from the event loop that will read the queue."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        with self._lock:
            self._subs[q] = asyncio.get_running_loop()
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        with self._lock:
            self._subs.pop(q, None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.items())
        for q, loop in subs:
            try:
                loop.call_soon_threadsafe(_offer, q, event)
            except RuntimeError:  # that loop is closed: its client is gone
                self.unsubscribe(q)


def _offer(q: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
    if q.full():  # a slow client loses its oldest event, never blocks the others
        q.get_nowait()
    q.put_nowait(event)
