"""The recorder's visitor grouping: one quality-gated embedding per track of a stranger.

Every face the recorder is handed goes through :meth:`VisitorGrouper.face`. While a
track stays unnamed it keeps its best view (:func:`~sauron.match.quality.face_quality`)
with that view's embedding and crop. A track that is named even once is a watched
person's and is dropped. When a track ends (unseen for ``track_end_s``; a still photo's
face at once) and its best view is good enough, it becomes a visit of the nearest visitor
(:class:`~sauron.store.visitors.VisitorStore`).

A visit that joins a visitor seen before (a return, never a new visitor) may raise an
alert: on a camera of ``visitors.alert_cameras``, or when it is the visitor's Nth visit or
a multiple of it (``visitors.alert_visits``). The grouper only decides; the recorder takes
the :class:`VisitorAlert` objects (:meth:`VisitorGrouper.take_alerts`), stores each as an
alert and publishes it like a watched person's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sauron.config import VisitorsConfig
from sauron.store.visitors import Grouped, NewVisit, VisitorStore

log = logging.getLogger(__name__)

#: why a visitor's return raised an alert
CAMERA, VISITS = "camera", "visits"


def visitor_label(visitor_id: int) -> str:
    """How a visitor is named to people (the web app's pages, the alerts' ``person``)."""
    return f"visitor {visitor_id}"


def alert_reasons(cfg: VisitorsConfig, camera: str, grouped: Grouped) -> tuple[str, ...]:
    """Why this visit raises an alert: none for a new visitor (not a return), ``camera``
    on a camera of ``alert_cameras``, ``visits`` when the visitor's visits reached a
    multiple of ``alert_visits``."""
    if grouped.new:
        return ()
    reasons = []
    if camera in cfg.alert_cameras:
        reasons.append(CAMERA)
    if cfg.alert_visits > 0 and grouped.visits % cfg.alert_visits == 0:
        reasons.append(VISITS)
    return tuple(reasons)


@dataclass(frozen=True)
class VisitorAlert:
    """A returning visitor's visit that the alert rules picked (``reasons``)."""

    visitor_id: int
    visit_id: int
    visits: int  # the visitor's visits, this one included
    camera: str
    started_at: float
    ended_at: float
    frames: int
    distance: float  # from the visit's face to the visitor's centroid, before it joined
    snapshot: bytes | None
    reasons: tuple[str, ...]

    @property
    def label(self) -> str:
        return visitor_label(self.visitor_id)

    def event(self, alert_id: int) -> dict[str, Any]:
        """The alert event (web pages, Kafka, webhook) once stored as ``alert_id``: a
        watched person's fields (``person`` is the visitor's label), ``kind`` "visitor",
        and the visitor's id, visits and why it alerted."""
        return {
            "id": alert_id,
            "kind": "visitor",
            "person": self.label,
            "visitor_id": self.visitor_id,
            "camera": self.camera,
            "ts": self.started_at,
            "last_seen_at": self.ended_at,
            "distance": round(float(self.distance), 4),
            "frames": self.frames,
            "visits": self.visits,
            "reasons": list(self.reasons),
            "snapshot_url": f"/api/alerts/{alert_id}/snapshot.jpg",
        }


@dataclass
class _Open:
    camera: str
    track: int
    started_at: float
    ended_at: float
    seen: float  # wall clock of the last frame that showed it
    quality: float = -1.0
    embedding: np.ndarray | None = None
    snapshot: bytes | None = None
    named: bool = False
    last: np.ndarray | None = None  # the latest embedding
    frames: int = 0


class VisitorGrouper:
    """Open tracks of unnamed faces, grouped into visitors as they end."""

    def __init__(
        self, visitors: VisitorStore, cfg: VisitorsConfig, new_person_at: float = 0.6
    ) -> None:
        self.visitors = visitors
        self.cfg = cfg
        self.new_person_at = new_person_at
        self._open: dict[tuple[str, int], _Open] = {}
        self.grouped = 0  # visits stored
        self.new_visitors = 0
        self._alerts: list[VisitorAlert] = []  # raised, not yet taken by the recorder

    def face(
        self,
        camera: str,
        track: int,
        ts: float,
        person: str | None,
        embedding: np.ndarray | None,
        quality: float,
        crop: Callable[[], bytes | None],
    ) -> None:
        """One face of one frame; ``track`` < 0: a face of a still (its own scene)."""
        if track < 0:
            if person is None and embedding is not None and quality >= self.cfg.min_quality:
                self._store(_Open(camera, track, ts, ts, 0.0, quality, embedding, crop(), frames=1))
            return
        key = (camera, track)
        t = self._open.get(key)
        usable = embedding is not None and bool(np.isfinite(embedding).all())
        if (
            t is not None
            and usable
            and t.last is not None
            and float(np.linalg.norm(embedding - t.last)) > self.new_person_at
        ):
            self._finish(t)  # someone else in the track's place
            t = None
        if t is None:
            t = self._open[key] = _Open(camera, track, ts, ts, 0.0)
        t.ended_at, t.seen = max(t.ended_at, ts), time.monotonic()
        t.frames += 1
        if usable:
            t.last = embedding
        if person is not None:
            t.named = True
        elif not t.named and usable and embedding is not None and quality > t.quality:
            t.quality, t.embedding, t.snapshot = quality, embedding.copy(), crop()

    def end_idle(self, everything: bool = False) -> int:
        """Group the tracks unseen for ``track_end_s`` (all of them with ``everything``);
        how many visits were stored."""
        now = time.monotonic()
        ended = [
            k for k, t in self._open.items() if everything or now - t.seen > self.cfg.track_end_s
        ]
        return sum(self._finish(self._open.pop(key)) for key in ended)

    def _finish(self, t: _Open) -> bool:
        """Group an ended track (or a track's part) if it is a good view of a stranger."""
        if t.named or t.embedding is None or t.quality < self.cfg.min_quality:
            return False
        self._store(t)
        return True

    def take_alerts(self) -> list[VisitorAlert]:
        """The alerts raised since the last call, oldest first."""
        out, self._alerts = self._alerts, []
        return out

    def _store(self, t: _Open) -> None:
        assert t.embedding is not None
        got = self.visitors.group(
            NewVisit(
                t.camera, t.track, t.started_at, t.ended_at, t.quality, t.embedding, t.snapshot
            ),
            self.cfg.threshold,
        )
        self.grouped += 1
        self.new_visitors += got.new
        log.debug(
            "visitors: camera %s track %d -> visitor %d%s",
            t.camera,
            t.track,
            got.visitor_id,
            " (new)" if got.new else "",
        )
        reasons = alert_reasons(self.cfg, t.camera, got)
        if reasons:
            self._alerts.append(
                VisitorAlert(
                    got.visitor_id,
                    got.visit_id,
                    got.visits,
                    t.camera,
                    t.started_at,
                    t.ended_at,
                    max(t.frames, 1),
                    got.distance,
                    t.snapshot,
                    reasons,
                )
            )
