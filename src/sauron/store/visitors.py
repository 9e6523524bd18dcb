"""Visitors in the store: faces of no enrolled person grouped into persistent ids.

Each ended track of an unnamed face brings one visit (its best face's embedding and crop).
A visit joins the visitor whose centroid (the mean embedding of its visits) is nearest,
if that is within the threshold, else it starts a new visitor. This is incremental
nearest-centroid clustering, chosen over re-running a batch clusterer (chinese whispers,
DBSCAN) because ids must stay stable while the system runs: a visitor is never renumbered,
only merged or split by the operator. Assignment reads the centroids inside the same
transaction that writes the visit, so several recorders over one database agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from sauron.store import NotFound
from sauron.store.db import Store, embedding_array, embedding_bytes, rowcount
from sauron.store.models import Visit, Visitor


@dataclass(frozen=True)
class NewVisit:
    camera: str
    track: int
    started_at: float
    ended_at: float
    quality: float
    embedding: np.ndarray
    snapshot: bytes | None


@dataclass(frozen=True)
class Grouped:
    """Where a visit went: its visitor, whether that visitor is new, the visit's id, the
    visitor's visits counting this one, and how far the visit was from the visitor's
    centroid before it joined (0 for a new visitor)."""

    visitor_id: int
    new: bool
    visit_id: int
    visits: int
    distance: float


@dataclass(frozen=True)
class VisitFields:
    """What is told of a stored visit, here and in the web API's answers."""

    id: int
    visitor_id: int
    camera: str
    track: int
    started_at: float
    ended_at: float
    quality: float


@dataclass(frozen=True)
class VisitInfo(VisitFields):
    has_snapshot: bool


@dataclass(frozen=True)
class VisitorInfo:
    id: int
    first_seen: float
    last_seen: float
    visits: int
    cameras: tuple[str, ...]
    best_visits: tuple[int, ...]  # ids of the visits with the best crops, best first


@dataclass(frozen=True)
class VisitorMatch:
    visitor: VisitorInfo
    distance: float


Sort = Literal["visits", "recent"]


def _visit_info(v: Visit, has_snapshot: bool) -> VisitInfo:
    return VisitInfo(
        v.id, v.visitor_id, v.camera, v.track, v.started_at, v.ended_at, v.quality, has_snapshot
    )


class VisitorStore:
    """The visitors of one :class:`~sauron.store.db.Store`."""

    def __init__(self, store: Store, crops: int = 5) -> None:
        self.store = store
        self.crops = crops

    # --- grouping -------------------------------------------------------------------------

    def add_visit(self, visit: NewVisit, threshold: float) -> tuple[int, bool]:
        """Store the visit with the nearest visitor within ``threshold`` or a new one;
        (visitor id, whether it is new)."""
        got = self.group(visit, threshold)
        return got.visitor_id, got.new

    def group(self, visit: NewVisit, threshold: float) -> Grouped:
        """Store the visit with the nearest visitor within ``threshold`` or a new one."""
        emb = np.asarray(visit.embedding, np.float32)
        with self.store.session() as s:
            rows = s.execute(select(Visitor.id, Visitor.centroid)).all()
            target: int | None = None
            distance = 0.0
            if rows:
                ids = np.array([r[0] for r in rows], np.int64)
                mat = np.stack([embedding_array(r[1]) for r in rows])
                dist = np.linalg.norm(mat - emb, axis=1)
                best = int(np.argmin(dist))
                if float(dist[best]) <= threshold:
                    target, distance = int(ids[best]), round(float(dist[best]), 4)
            new = target is None
            if target is None:
                v = Visitor(
                    created_at=time.time(),
                    first_seen=visit.started_at,
                    last_seen=visit.ended_at,
                    visits=0,
                    centroid=embedding_bytes(emb),
                )
                s.add(v)
                s.flush()
                target = v.id
            row = Visit(
                visitor_id=target,
                camera=visit.camera,
                track=visit.track,
                started_at=visit.started_at,
                ended_at=visit.ended_at,
                quality=visit.quality,
                embedding=embedding_bytes(emb),
                snapshot=visit.snapshot,
            )
            s.add(row)
            s.flush()
            self._refresh(s, target)
            visits = int(s.scalar(select(Visitor.visits).where(Visitor.id == target)) or 0)
            return Grouped(target, new, row.id, visits, distance)

    @staticmethod
    def _refresh(s: Session, visitor_id: int) -> bool:
        """Recompute a visitor from its visits; one left without visits is deleted.
        Whether it still exists."""
        rows = s.execute(
            select(Visit.embedding, Visit.started_at, Visit.ended_at).where(
                Visit.visitor_id == visitor_id
            )
        ).all()
        if not rows:
            s.execute(delete(Visitor).where(Visitor.id == visitor_id))
            return False
        centroid = np.mean([embedding_array(r[0]) for r in rows], axis=0)
        s.execute(
            update(Visitor)
            .where(Visitor.id == visitor_id)
            .values(
                centroid=embedding_bytes(centroid),
                visits=len(rows),
                first_seen=min(r[1] for r in rows),
                last_seen=max(r[2] for r in rows),
            )
        )
        return True

    # --- reading --------------------------------------------------------------------------

    def _infos(self, s: Session, visitors: list[Visitor]) -> list[VisitorInfo]:
        if not visitors:
            return []
        ids = [v.id for v in visitors]
        cams: dict[int, set[str]] = {i: set() for i in ids}
        for vid, cam in s.execute(
            select(Visit.visitor_id, Visit.camera).where(Visit.visitor_id.in_(ids)).distinct()
        ).all():
            cams[vid].add(cam)
        best: dict[int, list[int]] = {i: [] for i in ids}
        for vid, visit_id in s.execute(
            select(Visit.visitor_id, Visit.id)
            .where(Visit.visitor_id.in_(ids), Visit.snapshot.is_not(None))
            .order_by(Visit.visitor_id, Visit.quality.desc(), Visit.id.desc())
        ).all():
            if len(best[vid]) < self.crops:
                best[vid].append(visit_id)
        return [
            VisitorInfo(
                v.id,
                v.first_seen,
                v.last_seen,
                v.visits,
                tuple(sorted(cams[v.id])),
                tuple(best[v.id]),
            )
            for v in visitors
        ]

    def list_visitors(
        self, *, sort: Sort = "recent", limit: int = 50, offset: int = 0, camera: str | None = None
    ) -> list[VisitorInfo]:
        """Visitors by most visits or most recently seen (``camera``: seen there)."""
        order = (
            (Visitor.visits.desc(), Visitor.last_seen.desc())
            if sort == "visits"
            else (Visitor.last_seen.desc(), Visitor.id.desc())
        )
        q = select(Visitor)
        if camera:
            q = q.where(Visitor.id.in_(select(Visit.visitor_id).where(Visit.camera == camera)))
        with self.store.session() as s:
            rows = list(s.scalars(q.order_by(*order).limit(limit).offset(offset)))
            return self._infos(s, rows)

    def count(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).select_from(Visitor)) or 0)

    def get(self, visitor_id: int) -> VisitorInfo:
        with self.store.session() as s:
            v = s.get(Visitor, visitor_id)
            if v is None:
                raise NotFound(f"no visitor {visitor_id}")
            return self._infos(s, [v])[0]

    def visits(self, visitor_id: int, limit: int = 200) -> list[VisitInfo]:
        """A visitor's visits, newest first."""
        self.get(visitor_id)
        with self.store.session() as s:
            return [
                _visit_info(v, bool(has))
                for v, has in s.execute(
                    select(Visit, Visit.snapshot.is_not(None))
                    .where(Visit.visitor_id == visitor_id)
                    .order_by(Visit.ended_at.desc(), Visit.id.desc())
                    .limit(limit)
                ).all()
            ]

    def visit_snapshot(self, visit_id: int) -> bytes | None:
        with self.store.session() as s:
            return s.scalar(select(Visit.snapshot).where(Visit.id == visit_id))

    def best_crops(self, visitor_id: int) -> list[bytes]:
        """The visitor's best crops (JPEG), best first."""
        info = self.get(visitor_id)
        with self.store.session() as s:
            by_id = dict(
                s.execute(
                    select(Visit.id, Visit.snapshot).where(Visit.id.in_(info.best_visits))
                ).all()
            )
            if info.best_visits and not by_id and s.get(Visitor, visitor_id) is None:
                # deleted (or promoted) between the two reads: the same answer as before them
                raise NotFound(f"no visitor {visitor_id}")
        return [crop for i in info.best_visits if (crop := by_id.get(i))]

    def nearest(self, embedding: np.ndarray, threshold: float, k: int = 5) -> list[VisitorMatch]:
        """Visitors whose centroid is within ``threshold`` of ``embedding``, nearest first."""
        with self.store.session() as s:
            rows = s.execute(select(Visitor.id, Visitor.centroid)).all()
        if not rows:
            return []
        mat = np.stack([embedding_array(r[1]) for r in rows])
        dist = np.linalg.norm(mat - np.asarray(embedding, np.float32), axis=1)
        order = [int(i) for i in np.argsort(dist)[:k] if dist[i] <= threshold]
        with self.store.session() as s:
            found = {
                v.id: v
                for v in s.scalars(
                    select(Visitor).where(Visitor.id.in_([rows[i][0] for i in order]))
                )
            }
            infos = {i.id: i for i in self._infos(s, list(found.values()))}
        return [
            VisitorMatch(infos[rows[i][0]], round(float(dist[i]), 4))
            for i in order
            if rows[i][0] in infos
        ]

    # --- operator's changes ---------------------------------------------------------------

    def merge(self, into: int, other: int) -> VisitorInfo:
        """Move every visit of ``other`` to ``into``; ``other`` is gone, ``into`` keeps its id."""
        if into == other:
            raise ValueError("cannot merge a visitor with itself")
        with self.store.session() as s:
            for vid in (into, other):
                if s.get(Visitor, vid) is None:
                    raise NotFound(f"no visitor {vid}")
            s.execute(update(Visit).where(Visit.visitor_id == other).values(visitor_id=into))
            self._refresh(s, other)
            self._refresh(s, into)
        return self.get(into)

    def split(self, visit_id: int) -> tuple[VisitorInfo | None, VisitorInfo]:
        """Move one visit to a new visitor of its own: (the old visitor, or None when that
        was its only visit, and the new one)."""
        with self.store.session() as s:
            visit = s.get(Visit, visit_id)
            if visit is None:
                raise NotFound(f"no visit {visit_id}")
            old = visit.visitor_id
            v = Visitor(
                created_at=time.time(),
                first_seen=visit.started_at,
                last_seen=visit.ended_at,
                visits=1,
                centroid=visit.embedding,
            )
            s.add(v)
            s.flush()
            visit.visitor_id = v.id
            s.flush()
            remains = self._refresh(s, old)
            new_id = v.id
        return (self.get(old) if remains else None), self.get(new_id)

    def delete(self, visitor_id: int) -> bool:
        with self.store.session() as s:
            return bool(rowcount(s.execute(delete(Visitor).where(Visitor.id == visitor_id))))

    def purge_before(self, cutoff: float) -> int:
        """Retention: delete visits that ended before ``cutoff`` (visitors left without
        visits go too); the number of visits deleted."""
        with self.store.session() as s:
            touched = list(
                s.scalars(select(Visit.visitor_id).where(Visit.ended_at < cutoff).distinct())
            )
            n = rowcount(s.execute(delete(Visit).where(Visit.ended_at < cutoff)))
            for vid in touched:
                self._refresh(s, vid)
        return n
