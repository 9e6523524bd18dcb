"""The recorder's visitor grouping: one quality-gated embedding per track of a stranger.

Every face the recorder is handed goes through :meth:`VisitorGrouper.face`. While a
track stays unnamed it keeps its best view (:func:`~sauron.match.quality.face_quality`)
with that view's embedding and crop. A track that is named even once is a watched
person's and is dropped. When a track ends (unseen for ``track_end_s``; a still photo's
face at once) and its best view is good enough, it becomes a visit of the nearest visitor
(:class:`~sauron.store.visitors.VisitorStore`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sauron.config import VisitorsConfig
from sauron.store.visitors import NewVisit, VisitorStore

log = logging.getLogger(__name__)


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
                self._store(_Open(camera, track, ts, ts, 0.0, quality, embedding, crop()))
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

    def _store(self, t: _Open) -> None:
        assert t.embedding is not None
        visitor, new = self.visitors.add_visit(
            NewVisit(
                t.camera, t.track, t.started_at, t.ended_at, t.quality, t.embedding, t.snapshot
            ),
            self.cfg.threshold,
        )
        self.grouped += 1
        self.new_visitors += new
        log.debug(
            "visitors: camera %s track %d -> visitor %d%s",
            t.camera,
            t.track,
            visitor,
            " (new)" if new else "",
        )
