"""Appearances: the runs of frames in which one camera shows one watched person.

An appearance is a run of frames of one camera that show the person, where a gap longer
than ``alerts.gap_s`` of capture time (a few missed detections do not count as leaving)
ends the run: the next sighting after it is a new appearance and a new alert.

The record stage's recorder (``record/recorder.py``) groups named faces with an
:class:`AppearanceTracker`, stores each new appearance as an alert and hands the
:func:`alert_event` to an :class:`AlertPublisher`; ``record/alerts.py`` delivers it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class AppearanceSpan:
    """Who was seen on which camera, from when to when (capture time), in how many
    frames, at the best (lowest) distance. A stored alert is a span with an id
    (``store.db.AlertInfo``)."""

    person: str
    camera: str
    started_at: float
    last_seen_at: float
    frames: int
    distance: float


@dataclass
class Appearance:
    """An open appearance: its span so far, the alert that stores it once stored, and
    whether the span grew since the store last heard of it."""

    span: AppearanceSpan
    alert_id: int | None = None
    dirty: bool = False


class AppearanceTracker:
    """Groups sightings of (camera, person) into appearances."""

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s
        self._open: dict[tuple[str, str], Appearance] = {}

    def observe(
        self, camera: str, person: str, ts: float, distance: float
    ) -> tuple[Appearance, bool]:
        """The appearance this sighting belongs to, and whether it starts a new one."""
        key = (camera, person)
        app = self._open.get(key)
        if app is None or ts - app.span.last_seen_at > self.gap_s:
            app = Appearance(AppearanceSpan(person, camera, ts, ts, 1, distance))
            self._open[key] = app
            return app, True
        span = app.span
        app.span = replace(
            span,
            frames=span.frames + 1,
            last_seen_at=max(span.last_seen_at, ts),
            distance=min(span.distance, distance),
        )
        app.dirty = True
        return app, False

    def dirty(self) -> list[Appearance]:
        out = [a for a in self._open.values() if a.dirty]
        for a in out:
            a.dirty = False
        return out

    def close_idle(self, newest_ts: float) -> None:
        """Forget appearances that ended (keeps memory bounded on long runs)."""
        for key in [
            k
            for k, a in self._open.items()
            if newest_ts - a.span.last_seen_at > 10 * self.gap_s and not a.dirty
        ]:
            del self._open[key]


class AlertPublisher(Protocol):
    """Whatever delivers a new alert (``record.alerts.AlertDispatcher`` in the product)."""

    def publish(self, event: dict[str, Any]) -> None: ...


def alert_event(
    alert_id: int, person: str, camera: str, ts: float, distance: float, frames: int = 1
) -> dict[str, Any]:
    return {
        "id": alert_id,
        "kind": "person",
        "person": person,
        "camera": camera,
        "ts": ts,
        "distance": round(float(distance), 4),
        "frames": frames,
        "snapshot_url": f"/api/alerts/{alert_id}/snapshot.jpg",
    }
