"""History: sightings and alerts with snapshots, paginated; search by photo."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, Field

from sauron.match.enroll import EnrollError
from sauron.serve.web.auth import Ctx, Viewer, audit
from sauron.serve.web.context import BeforeId, IdPath, from_record
from sauron.serve.web.enrollment import safe_filename
from sauron.store.db import AlertInfo, SightingFields, SightingFilter, SightingInfo
from sauron.store.visitors import VisitorStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["history"])
MAX_PAGE = 500


@dataclass(frozen=True)
class SightingOut(SightingFields):
    snapshot_url: str | None


class SightingPage(BaseModel):
    items: list[SightingOut]
    next_before: int | None


class AlertOut(BaseModel):
    id: int
    person: str
    camera: str
    ts: float
    last_seen_at: float
    frames: int
    distance: float
    snapshot_url: str | None


@dataclass(frozen=True)
class SearchHit(SightingOut):
    query_distance: float


class VisitorHit(BaseModel):
    visitor_id: int
    label: str
    visits: int
    last_seen: float
    query_distance: float = Field(description="From the photo's face to the visitor's centroid")
    crop_url: str | None


class SearchOut(BaseModel):
    total: int
    searched: int
    took_ms: float
    tolerance: float
    items: list[SearchHit]
    visitors: list[VisitorHit] = Field(
        description="Visitors (faces of no enrolled person, grouped) the photo's face "
        "is within the tolerance of, nearest first"
    )


def sighting_out(s: SightingInfo) -> SightingOut:
    url = f"/api/sightings/{s.id}/snapshot.jpg" if s.has_snapshot else None
    told = {f.name: getattr(s, f.name) for f in fields(SightingFields)}
    return SightingOut(**told, snapshot_url=url)


def alert_out(a: AlertInfo) -> AlertOut:
    url = f"/api/alerts/{a.id}/snapshot.jpg" if a.has_snapshot else None
    return from_record(AlertOut, a, ts=a.started_at, snapshot_url=url)


def _jpeg_route(path: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A GET route that answers a stored JPEG snapshot."""
    return router.get(
        path, response_class=Response, responses={200: {"content": {"image/jpeg": {}}}}
    )


def _jpeg(data: bytes | None, what: str) -> Response:
    if data is None:
        raise HTTPException(404, f"no snapshot for {what}")
    return face_image(data, "image/jpeg")


def face_image(data: bytes, media_type: str) -> Response:
    """A face photo or snapshot: never kept by the browser or a proxy (after log-out,
    another user of the machine must not find it in the cache)."""
    return Response(
        data,
        media_type=media_type,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/sightings", response_model=SightingPage)
def sightings(
    ctx: Ctx,
    _p: Viewer,
    person: str | None = None,
    camera: str | None = None,
    since: Annotated[float | None, Query(description="Unix time, inclusive")] = None,
    until: Annotated[float | None, Query(description="Unix time, exclusive")] = None,
    named: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: BeforeId = None,
) -> SightingPage:
    """Face sightings, newest first, filtered by person, camera and capture time."""
    rows = ctx.store.sightings(
        SightingFilter(
            person=person or None,
            camera=camera or None,
            since=since,
            until=until,
            named_only=named,
            before_id=before,
        ),
        limit=limit,
    )
    return SightingPage(
        items=[sighting_out(s) for s in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


@_jpeg_route("/sightings/{sighting_id}/snapshot.jpg")
def sighting_snapshot(sighting_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    return _jpeg(ctx.store.sighting_snapshot(sighting_id), f"sighting {sighting_id}")


@router.get("/alerts", response_model=list[AlertOut])
def alerts(
    ctx: Ctx,
    _p: Viewer,
    person: str | None = None,
    camera: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: BeforeId = None,
) -> list[AlertOut]:
    return [
        alert_out(a)
        for a in ctx.store.alerts(
            limit=limit, before_id=before, person=person or None, camera=camera or None
        )
    ]


@_jpeg_route("/alerts/{alert_id}/snapshot.jpg")
def alert_snapshot(alert_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    return _jpeg(ctx.store.alert_snapshot(alert_id), f"alert {alert_id}")


@router.post("/search", response_model=SearchOut)
async def search(
    ctx: Ctx,
    p: Viewer,
    photo: Annotated[UploadFile, File()],
    tolerance: Annotated[float | None, Form(gt=0, le=2)] = None,
    limit: Annotated[int, Form(ge=1, le=1000)] = 100,
    largest: Annotated[bool, Form()] = False,
) -> SearchOut:
    """Every stored sighting of the face in ``photo``, nearest first, and the visitors
    it may be."""
    tol = tolerance if tolerance is not None else ctx.settings.match.tolerance
    data = await photo.read(ctx.enroller.max_photo_bytes + 1)
    name = safe_filename(photo.filename)
    try:
        _, emb = await ctx.decode_gate.run(
            lambda: ctx.enroller.embedding(data, name, largest=largest, remember=False)
        )
    except EnrollError as exc:
        raise HTTPException(
            422, {"message": "photo refused", "refused": [{"file": name, "reason": str(exc)}]}
        ) from None
    await run_in_threadpool(ctx.sync_index)
    t0 = time.perf_counter()
    hits, total = await run_in_threadpool(ctx.index.search, emb, radius=tol, limit=limit)
    took = (time.perf_counter() - t0) * 1000
    rows = await run_in_threadpool(ctx.store.sightings_by_ids, [h.sighting_id for h in hits])
    items = [
        SearchHit(**asdict(sighting_out(rows[h.sighting_id])), query_distance=round(h.distance, 4))
        for h in hits
        if h.sighting_id in rows
    ]
    found = await run_in_threadpool(VisitorStore(ctx.store).nearest, emb, tol, 10)
    visitors = [
        VisitorHit(
            visitor_id=m.visitor.id,
            label=f"visitor {m.visitor.id}",
            visits=m.visitor.visits,
            last_seen=m.visitor.last_seen,
            query_distance=m.distance,
            crop_url=(
                f"/api/visits/{m.visitor.best_visits[0]}/snapshot.jpg"
                if m.visitor.best_visits
                else None
            ),
        )
        for m in found
    ]
    audit(ctx, p, "search", name, tolerance=tol, results=total, visitors=len(visitors))
    return SearchOut(
        total=total,
        searched=len(ctx.index),
        took_ms=round(took, 2),
        tolerance=tol,
        items=items,
        visitors=visitors,
    )
