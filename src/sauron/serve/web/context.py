"""What the web app's routes need, gathered in one object the app factory takes."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel

from sauron.config import Settings
from sauron.serve.alerts import Broadcaster
from sauron.serve.web.enrollment import Enroller, WatchlistSync
from sauron.serve.web.live import LiveHub
from sauron.store.accounts import Accounts
from sauron.store.db import Store
from sauron.store.index import FaceIndex

Out = TypeVar("Out", bound=BaseModel)


def from_record(model: type[Out], record: Any, **extra: Any) -> Out:
    """An API answer built from a store record: each field of ``model`` the record has
    under the same name, then ``extra`` (computed or renamed fields)."""
    values = {k: getattr(record, k) for k in model.model_fields if hasattr(record, k)}
    return model(**{**values, **extra})


class LoginGuard:
    """Slows password guessing: after ``limit`` failures for a name within ``window_s``,
    further attempts are refused until the window has passed."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = {}

    def blocked(self, username: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._fails.get(username)
            while q and now - q[0] > self.window_s:
                q.popleft()
            return bool(q) and len(q) >= self.limit  # type: ignore[arg-type]

    def failed(self, username: str) -> None:
        with self._lock:
            self._fails.setdefault(username, deque(maxlen=self.limit)).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._fails.pop(username, None)


@dataclass
class WebContext:
    settings: Settings
    store: Store
    accounts: Accounts
    index: FaceIndex
    hub: LiveHub
    broadcaster: Broadcaster
    enroller: Enroller
    watchlists: WatchlistSync
    login_guard: LoginGuard = field(default_factory=LoginGuard)
    index_lock: threading.Lock = field(default_factory=threading.Lock)
    #: the long-running parts and their states, for /api/health (``WebServices.parts``)
    health: Callable[[], dict[str, str]] | None = None

    def sync_index(self) -> int:
        with self.index_lock:
            return self.index.sync(self.store)


def get_context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx
