"""Defences against floods: log-in limits, bounded slow work, aggregated failure records.

* :class:`LoginThrottle` counts failed log-ins per (user name, client address), per client
  address and per user name. An attempt is counted *before* its password is checked, under
  one lock, so guesses sent at once cannot all get past the limit; a success takes its
  count back.
* :class:`Gate` runs slow jobs (password hashes, photo decodes) on a few threads of their
  own; the requests waiting for it hold no thread, and when too many wait the next one is
  answered 503 at once instead of queueing without end.
* :class:`FailureLog` writes failed log-ins to the audit log: the first of each user name
  and address at once, the rest as one row per period with their count, so a flood writes
  a bounded number of rows.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from fastapi import HTTPException, Request, status

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how many distinct counters (user names, addresses, pairs) are kept at most; the least
#: recently touched are forgotten first, so a flood of made-up names cannot grow memory
MAX_KEYS = 20_000


def client_address(request: Request) -> str:
    """The client's address as the limits key it: IPv4 as is, IPv6 by its /64 network
    (one machine usually holds a whole /64)."""
    host = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Throttled(Exception):
    """Too many failed log-ins: ``scope`` says whose, ``retry_after_s`` when to retry."""

    def __init__(self, scope: str, retry_after_s: float) -> None:
        super().__init__(scope)
        self.scope = scope
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


@dataclass(frozen=True)
class Lockout:
    """A counter at its limit: ``kind`` is pair, address or user."""

    kind: str
    username: str | None
    address: str | None
    failures: int
    retry_after_s: float


@dataclass(frozen=True)
class Attempt:
    """A log-in attempt counted as a failure until :meth:`LoginThrottle.succeeded`."""

    username: str
    address: str
    stamp: float
    keys: tuple[tuple[str, str, str], ...]


class LoginThrottle:
    """Failed log-ins within ``window_s``: at most ``per_pair`` for one user name from one
    address, ``per_address`` from one address over all names, ``per_user`` for one name
    from all addresses together (addresses that logged in as that user before are exempt
    from this last one, so strangers cannot lock a user out of their usual machines)."""

    def __init__(
        self,
        *,
        per_pair: int = 5,
        per_address: int = 20,
        per_user: int = 100,
        window_s: float = 300.0,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limits = {"pair": per_pair, "address": per_address, "user": per_user}
        self.window_s = window_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._fails: OrderedDict[tuple[str, str, str], deque[float]] = OrderedDict()
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def _keys(self, username: str, address: str) -> list[tuple[str, str, str]]:
        keys = [("pair", username, address), ("address", "", address)]
        if (username, address) not in self._known:
            keys.append(("user", username, ""))
        return keys

    def _recent(self, key: tuple[str, str, str], now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def begin(self, username: str, address: str) -> Attempt:
        """Count an attempt, or raise :class:`Throttled` if any of its limits is reached."""
        now = time.monotonic()
        with self._lock:
            keys = self._keys(username, address)
            for key in keys:
                q = self._recent(key, now)
                if len(q) >= self.limits[key[0]]:
                    raise Throttled(key[0], q[0] + self.window_s - now)
            for key in keys:
                self._fails.setdefault(key, deque()).append(now)
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)
            return Attempt(username, address, now, tuple(keys))

    def _take_back(self, attempt: Attempt) -> None:
        for key in attempt.keys:
            q = self._fails.get(key)
            if q is not None and attempt.stamp in q:
                q.remove(attempt.stamp)
                if not q:
                    del self._fails[key]

    def cancel(self, attempt: Attempt) -> None:
        """The password was never checked (server busy): the attempt does not count."""
        with self._lock:
            self._take_back(attempt)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: clear the pair, take the attempt back from the other
        counters, and remember the address as one this user logs in from."""
        with self._lock:
            self._take_back(attempt)
            self._fails.pop(("pair", attempt.username, attempt.address), None)
            self._known[(attempt.username, attempt.address)] = time.time()
            self._known.move_to_end((attempt.username, attempt.address))
            while len(self._known) > self.max_keys:
                self._known.popitem(last=False)

    def unlock(self, username: str) -> int:
        """Clear every counter of ``username`` (any address); how many were cleared."""
        with self._lock:
            keys = [k for k in self._fails if k[0] in ("pair", "user") and k[1] == username]
            for k in keys:
                del self._fails[k]
            return len(keys)

    def lockouts(self) -> list[Lockout]:
        """Every counter at its limit now."""
        now = time.monotonic()
        out = []
        with self._lock:
            for key in list(self._fails):
                q = self._recent(key, now)
                if len(q) >= self.limits[key[0]]:
                    out.append(
                        Lockout(
                            key[0],
                            key[1] or None,
                            key[2] or None,
                            len(q),
                            round(q[0] + self.window_s - now, 1),
                        )
                    )
        return out


class Gate:
    """Slow jobs (password hashes, photo decodes) on ``slots`` threads of their own, at
    most ``max_waiting`` more queued (beyond: 503 with Retry-After at once). Requests
    waiting hold no thread, and the jobs' memory stays in those few threads' heaps
    instead of spreading over every thread of the server's pool."""

    def __init__(self, slots: int, max_waiting: int, what: str) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.what = what
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix=f"web-{what}")
        self._pending = 0  # queued or running; touched on the event loop only

    async def run(self, fn: Callable[[], T]) -> T:
        if self._pending >= self.slots + self.max_waiting:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the server is busy with other {self.what}; try again in a moment",
                headers={"Retry-After": "1"},
            )
        self._pending += 1
        job = asyncio.wrap_future(self._pool.submit(fn))
        job.add_done_callback(self._done)
        return await job

    def _done(self, _job: object) -> None:
        self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


AuditWriter = Callable[[str, str, str, str], None]


class FailureLog:
    """Failed log-ins for the audit log, bounded: per ``period_s`` at most
    ``immediate`` rows written at once (the first failure of each user name and address),
    then one row per user name and address with the count of the rest (at most
    ``max_keys`` of them, the others summed into one row for ``*``)."""

    def __init__(
        self,
        write: AuditWriter,
        *,
        period_s: float = 60.0,
        immediate: int = 20,
        max_keys: int = 200,
    ) -> None:
        self.write = write
        self.period_s = period_s
        self.immediate = immediate
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._written = 0
        self._seen: set[tuple[str, str, str]] = set()
        self._pending: dict[tuple[str, str, str], int] = {}
        self._overflow = 0

    def record(self, action: str, username: str, address: str) -> None:
        """One failure; written now if it is the first of its kind this period."""
        key = (action, printable(username[:64]), address)
        with self._lock:
            now_write = key not in self._seen and self._written < self.immediate
            if now_write:
                self._seen.add(key)
                self._written += 1
            elif key in self._pending or len(self._pending) < self.max_keys:
                self._pending[key] = self._pending.get(key, 0) + 1
            else:
                self._overflow += 1
        if now_write:
            self.write(key[1], action, key[1], _detail(address, 1))

    def flush(self, *, force: bool = False) -> int:
        """Write the counted failures if the period is over (or ``force``); rows written."""
        with self._lock:
            if not force and time.monotonic() - self._started < self.period_s:
                return 0
            pending, overflow = self._pending, self._overflow
            self._pending, self._overflow, self._written = {}, 0, 0
            self._seen = set()
            self._started = time.monotonic()
        for (action, username, address), count in pending.items():
            self.write(username, action, username, _detail(address, count))
        if overflow:
            self.write("*", "login_failed", "*", _detail("*", overflow))
        return len(pending) + bool(overflow)


def printable(text: str) -> str:
    """``text`` with its control and formatting characters written as ``\\uXXXX``: a user
    name as sent to a failed log-in goes to the audit log, and must not carry a line
    break (a forged line in an exported log) or a right-to-left override there."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c).startswith("C") else c for c in text
    )


def _detail(address: str, count: int) -> str:
    return json.dumps({"client": address, "count": count})
