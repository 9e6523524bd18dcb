"""Retention: sightings (with their snapshots) and alerts older than the configured age
are deleted automatically, and the search index forgets them."""

from __future__ import annotations

import logging
import threading
import time

from sauron.store.db import PurgeCounts, Store
from sauron.store.index import FaceIndex
from sauron.store.visitors import VisitorStore

log = logging.getLogger(__name__)


def purge(
    store: Store, retention_days: float, index: FaceIndex | None = None, now: float | None = None
) -> PurgeCounts:
    """Delete what is older than ``retention_days``; returns what was deleted."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    counts = store.purge_before(cutoff)
    counts.extra["visits"] = VisitorStore(store).purge_before(cutoff)
    if counts.sightings or counts.alerts or counts.extra["visits"]:
        log.info(
            "retention: deleted %d sightings, %d alerts and %d visits older than %.1f days",
            counts.sightings,
            counts.alerts,
            counts.extra["visits"],
            retention_days,
        )
    if index is not None and counts.sightings:
        low = store.min_sighting_id()
        index.forget_before(low if low is not None else index.last_id + 1)
    return counts


class RetentionWorker(threading.Thread):
    """Runs :func:`purge` now and then every ``every_s`` seconds until stopped."""

    def __init__(
        self, store: Store, retention_days: float, every_s: float, index: FaceIndex | None = None
    ) -> None:
        super().__init__(name="retention", daemon=True)
        self.store = store
        self.retention_days = retention_days
        self.every_s = every_s
        self.index = index
        self.stop_event = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                purge(self.store, self.retention_days, self.index)
                self.runs += 1
            except Exception:  # the database may be briefly unreachable; try again later
                log.exception("retention: purge failed")
            self.stop_event.wait(self.every_s)

    def stop(self) -> None:
        self.stop_event.set()
