"""Retention: sightings (with their snapshots) and alerts older than the configured age
are deleted automatically, and the search index forgets them; clips go after their own
ages (alerts' later than others'); and past the disk budget the oldest media go first,
ordinary sightings before alerts."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sauron.store.db import PurgeCounts, Store
from sauron.store.index import FaceIndex
from sauron.store.visitors import VisitorStore

log = logging.getLogger(__name__)

_GB = 1024**3


@dataclass(frozen=True)
class RetentionPolicy:
    """How long what is kept, and the most bytes the media folder may hold (0: no limit)."""

    days: float
    alert_clip_days: float | None = None
    sighting_clip_days: float | None = None
    budget_bytes: int = 0

    @classmethod
    def from_gb(
        cls,
        days: float,
        budget_gb: float,
        alert_clip_days: float | None = None,
        sighting_clip_days: float | None = None,
    ) -> RetentionPolicy:
        return cls(days, alert_clip_days, sighting_clip_days, int(budget_gb * _GB))


def _forget(store: Store, index: FaceIndex | None) -> None:
    if index is not None:
        low = store.min_sighting_id()
        index.forget_before(low if low is not None else index.last_id + 1)


def purge(
    store: Store, retention_days: float, index: FaceIndex | None = None, now: float | None = None
) -> PurgeCounts:
    """Delete what is older than ``retention_days``; returns what was deleted."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    counts = store.purge_before(cutoff)
    counts.extra["visits"] = VisitorStore(store).purge_before(cutoff)
    if counts.sightings or counts.alerts or counts.extra["visits"]:
        log.info(
            "retention: deleted %d sightings, %d alerts and %d visits older than %.1f days "
            "(%d files, %d clips)",
            counts.sightings,
            counts.alerts,
            counts.extra["visits"],
            retention_days,
            counts.files,
            counts.clips,
        )
    if counts.sightings:
        _forget(store, index)
    return counts


def purge_clips(store: Store, policy: RetentionPolicy, now: float | None = None) -> int:
    """Delete the clips older than their kind's age; returns how many."""
    now = time.time() if now is None else now
    total = 0
    for kind, days in (
        ("alert", policy.alert_clip_days),
        ("sighting", policy.sighting_clip_days),
    ):
        if days is None:
            continue
        n = store.purge_clips_before(kind, now - days * 86400.0)
        if n:
            log.info("retention: deleted %d %s clips older than %.1f days", n, kind, days)
        total += n
    return total


def enforce_budget(store: Store, budget_bytes: int, index: FaceIndex | None = None) -> int:
    """Delete the oldest media until they fit ``budget_bytes``: sightings of anyone and
    clips of faces not watched first, alerts and their clips only when that is not
    enough. Returns the bytes freed."""
    if budget_bytes <= 0:
        return 0
    usage = store.media_usage()
    excess = usage.total - budget_bytes
    if excess <= 0:
        return 0
    log.warning(
        "retention: media take %.1f MB, over the budget of %.1f MB; deleting the oldest",
        usage.total / 1e6,
        budget_bytes / 1e6,
    )
    freed = 0
    for kind in ("sightings", "alerts"):
        rows, got = store.trim_oldest(kind, excess - freed)
        freed += got
        if rows:
            log.warning(
                "retention: disk budget: deleted the %d oldest %s (rows and clips), %.1f MB",
                rows,
                kind,
                got / 1e6,
            )
        if freed >= excess:
            break
    else:
        log.error(
            "retention: media still %.1f MB over the budget with nothing left to delete "
            "(snapshots stored in the database before schema 4 do not count)",
            (excess - freed) / 1e6,
        )
    _forget(store, index)
    return freed


def apply(store: Store, policy: RetentionPolicy, index: FaceIndex | None = None) -> PurgeCounts:
    """One retention pass: ages, clip ages, then the disk budget."""
    counts = purge(store, policy.days, index)
    counts.clips += purge_clips(store, policy)
    counts.extra["budget_bytes_freed"] = enforce_budget(store, policy.budget_bytes, index)
    return counts


class RetentionWorker(threading.Thread):
    """Runs :func:`apply` now and then every ``every_s`` seconds until stopped."""

    def __init__(
        self,
        store: Store,
        policy: RetentionPolicy | float,
        every_s: float,
        index: FaceIndex | None = None,
    ) -> None:
        super().__init__(name="retention", daemon=True)
        self.store = store
        self.policy = policy if isinstance(policy, RetentionPolicy) else RetentionPolicy(policy)
        self.every_s = every_s
        self.index = index
        self.stop_event = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                apply(self.store, self.policy, self.index)
                self.runs += 1
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("retention: purge failed")
            self.stop_event.wait(self.every_s)

    def stop(self) -> None:
        self.stop_event.set()
