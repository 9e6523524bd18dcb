"""What the web app's routes need, gathered in one object the app factory takes."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query, Request
from pydantic import BaseModel

from sauron.config import Settings
from sauron.serve.alerts import Broadcaster
from sauron.serve.web.enrollment import Enroller, WatchlistSync
from sauron.serve.web.live import LiveHub
from sauron.serve.web.throttle import FailureLog, Gate, LoginThrottle
from sauron.store.accounts import Accounts
from sauron.store.db import Store
from sauron.store.index import FaceIndex

Out = TypeVar("Out", bound=BaseModel)

#: database ids are signed 64-bit: a larger number is refused (422) at the edge
MAX_ID = 2**63 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
BeforeId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="next_before of the previous page")
]


def from_record(model: type[Out], record: Any, **extra: Any) -> Out:
    """An API answer built from a store record: each field of ``model`` the record has
    under the same name, then ``extra`` (computed or renamed fields)."""
    values = {k: getattr(record, k) for k in model.model_fields if hasattr(record, k)}
    return model(**{**values, **extra})


class RecentPlays:
    """Who played which clip lately: the first request of a user for a clip is audited,
    whatever part it asks for, and the player's further requests for the same clip within
    :attr:`window_s` are not (a player asks for many ranges)."""

    def __init__(self, window_s: float = 600.0, capacity: int = 10_000) -> None:
        self.window_s, self.capacity = window_s, capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, username: str, what: str) -> bool:
        now, key = time.monotonic(), (username, what)
        with self._lock:
            last = self._seen.pop(key, None)
            self._seen[key] = now if last is None or now - last > self.window_s else last
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return last is None or now - last > self.window_s


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
    index_lock: threading.Lock = field(default_factory=threading.Lock)
    throttle: LoginThrottle = field(init=False)
    hash_gate: Gate = field(init=False)
    decode_gate: Gate = field(init=False)
    failures: FailureLog = field(init=False)
    plays: RecentPlays = field(default_factory=RecentPlays)  # clips played, for the audit
    #: the long-running parts and their states, for /api/health (``WebServices.parts``)
    health: Callable[[], dict[str, str]] | None = None

    def __post_init__(self) -> None:
        web = self.settings.web
        self.throttle = LoginThrottle(
            per_pair=web.login_fails_per_user,
            per_address=web.login_fails_per_address,
            per_user=web.login_fails_per_user_total,
            window_s=web.login_lock_minutes * 60,
        )
        # a few requests per slot may wait; the rest are told to come back (503)
        self.hash_gate = Gate(web.password_hash_slots, 8 * web.password_hash_slots, "log-ins")
        self.decode_gate = Gate(web.photo_decode_slots, 4 * web.photo_decode_slots, "photos")
        self.failures = FailureLog(self.store.audit)

    def sync_index(self) -> int:
        with self.index_lock:
            return self.index.sync(self.store)

    def forget_purged(self) -> None:
        """The index forgets the sightings the retention deleted."""
        low = self.store.min_sighting_id()
        with self.index_lock:
            self.index.forget_before(low if low is not None else self.index.last_id + 1)


def get_context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx
