"""Alerts on the open web pages: a :class:`Broadcaster` hands each alert event (from the
record stage in this process, or the Kafka alerts topic) to every server-sent-events
client. Delivery to Kafka, webhooks and MQTT is the record stage's
(``record/alerts.py``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sauron.queues import Empty, LatestQueue

Event = dict[str, Any]


class Subscription:
    """One client's events: the newest ``queue_size`` wait (a slow client loses its
    oldest, never blocks the others), read with ``await get()`` on the client's loop."""

    def __init__(self, queue_size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.events: LatestQueue[Event] = LatestQueue(queue_size)
        self.loop = loop
        self._arrived = asyncio.Event()

    def offer(self, event: Event) -> None:
        """From any thread; raises RuntimeError when the client's loop is closed."""
        self.events.put(event)
        self.loop.call_soon_threadsafe(self._arrived.set)

    async def get(self) -> Event:
        while True:
            try:
                return self.events.get(timeout=0)
            except Empty:
                self._arrived.clear()  # a later offer sets it again, after this
                await self._arrived.wait()


class Broadcaster:
    """Hands events from any thread to every subscribed client (SSE clients)."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        """Call from the event loop that will read the subscription."""
        sub = Subscription(self.queue_size, asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.offer(event)
            except RuntimeError:  # that loop is closed: its client is gone
                self.unsubscribe(sub)
