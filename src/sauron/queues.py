"""The bounded queue that keeps the newest items.

Putting an item into a full :class:`LatestQueue` never blocks the producer: the oldest
waiting item is dropped, handed back to the caller (to finish it: commit its offset, log
it) and counted. Frames waiting for a detect process, frames waiting for the store, a
live camera's newest picture and alerts waiting for a web page, a webhook or an MQTT
broker all wait in one: the view stays live and memory stays bounded while a consumer is
slow. Thread-safe; asyncio readers wait on their own signal (``serve/alerts.py``).
"""

from __future__ import annotations

import threading
from collections import deque
from queue import Empty
from typing import Generic, TypeVar

from sauron import SauronError

__all__ = ["Empty", "LatestQueue", "QueueClosed"]

T = TypeVar("T")


class QueueClosed(SauronError):
    """The queue was closed and everything put before that has been taken."""


class LatestQueue(Generic[T]):
    """At most ``maxsize`` items, oldest first; a put into a full queue drops the oldest.

    ``dropped`` counts the items pushed out by newer ones and those refused after
    :meth:`close`. ``get`` raises :class:`queue.Empty` when nothing came in time and
    :class:`QueueClosed` once the queue is closed and drained."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, but got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._closed = False
        self._ready = threading.Condition(threading.Lock())

    def put(self, item: T) -> list[T]:
        """Add ``item``; return the items this dropped, oldest first (none while there is
        room). A closed queue takes nothing: ``item`` itself comes back."""
        with self._ready:
            if self._closed:
                self.dropped += 1
                return [item]
            out = [self._items.popleft() for _ in range(len(self._items) - self.maxsize + 1)]
            self._items.append(item)
            self.dropped += len(out)
            self._ready.notify()
            return out

    def get(self, timeout: float | None = None) -> T:
        """Take the oldest item, waiting at most ``timeout`` s for one (``None``: for as
        long as it takes, ``0``: not at all)."""
        with self._ready:
            self._wait(timeout)
            return self._items.popleft()

    def peek(self, timeout: float | None = None) -> T:
        """The oldest item, left in the queue (take it with :meth:`discard` once done);
        waits like :meth:`get`."""
        with self._ready:
            self._wait(timeout)
            return self._items[0]

    def discard(self, item: T) -> bool:
        """Remove ``item`` if it is still the oldest (a newer one may have pushed it out
        since :meth:`peek`); say whether it was."""
        with self._ready:
            if self._items and self._items[0] is item:
                self._items.popleft()
                return True
            return False

    def close(self) -> None:
        """Take no more items; readers take what is left, then get :class:`QueueClosed`."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def full(self) -> bool:
        with self._ready:
            return len(self._items) >= self.maxsize

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)

    def _wait(self, timeout: float | None) -> None:
        if not self._ready.wait_for(lambda: self._items or self._closed, timeout):
            raise Empty
        if not self._items:
            raise QueueClosed("the queue is closed")
