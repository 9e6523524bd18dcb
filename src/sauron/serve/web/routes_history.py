"""History: sightings and alerts with snapshots, paginated; search by photo."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, Field

from sauron.imaging import encode_jpeg
from sauron.match.enroll import EnrollError, SeveralFaces
from sauron.record.clips import frame_at
from sauron.serve.web.auth import Ctx, Viewer, audit
from sauron.serve.web.context import MAX_ID, BeforeId, IdPath, WebContext, from_record
from sauron.serve.web.enrollment import safe_filename
from sauron.store.accounts import Principal
from sauron.store.db import (
    AlertInfo,
    AlertState,
    SightingFields,
    SightingFilter,
    SightingInfo,
)
from sauron.store.visitors import VisitorStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["history"])
MAX_PAGE = 500
MAX_SEARCH_OFFSET = 10_000


@dataclass(frozen=True)
class SightingOut(SightingFields):
    snapshot_url: str | None
    clip_url: str | None
    frame_url: str | None  # the whole annotated frame, from the clip


class SightingPage(BaseModel):
    items: list[SightingOut]
    next_before: int | None


class AlertOut(BaseModel):
    id: int
    kind: Literal["person", "visitor"] = Field(
        description="person: a watched person appeared; visitor: a visitor came back "
        '(visitors.alert_cameras, visitors.alert_visits), "person" is then "visitor <id>"'
    )
    visitor_id: int | None = Field(description="the returning visitor's id (kind visitor)")
    person: str
    camera: str
    ts: float
    last_seen_at: float
    frames: int
    distance: float
    snapshot_url: str | None
    confidence: float | None = Field(
        description="of its best frame: 100 % at distance 0, 50 % at the match tolerance "
        "(none for a visitor's: its distance is to the visitor's centroid)"
    )
    clip_url: str | None = None
    frame_url: str | None = Field(None, description="the whole frame at its start, from the clip")
    acknowledged_at: float | None = Field(description="when an operator acknowledged it")
    acknowledged_by: str | None = Field(description="who acknowledged it")


class AckAllIn(BaseModel):
    """Which open alerts to acknowledge: all of them, or those of a person, a camera, up
    to an id (the newest the operator saw, so one that just arrived stays open)."""

    person: str | None = Field(None, max_length=64)
    camera: str | None = Field(None, max_length=64)
    up_to_id: int | None = Field(None, ge=1, le=MAX_ID)


class AckOut(BaseModel):
    acknowledged: list[int] = Field(description="ids of the alerts acknowledged now")


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


def sighting_out(s: SightingInfo, has_clip: bool = False) -> SightingOut:
    url = f"/api/sightings/{s.id}/snapshot.jpg" if s.has_snapshot else None
    clip = f"/api/sightings/{s.id}/clip.mp4" if has_clip else None
    frame = f"/api/sightings/{s.id}/frame.jpg" if has_clip else None
    told = {f.name: getattr(s, f.name) for f in fields(SightingFields)}
    return SightingOut(**told, snapshot_url=url, clip_url=clip, frame_url=frame)


def confidence(distance: float | None, tolerance: float) -> float | None:
    """A distance as an operator reads it, in percent: 100 at distance 0, 50 at the
    tolerance (the match threshold), 0 at twice it and beyond."""
    if distance is None:
        return None
    return round(max(0.0, min(1.0, 1.0 - distance / (2.0 * tolerance))) * 100.0, 1)


def alert_out(a: AlertInfo, tolerance: float, has_clip: bool = False) -> AlertOut:
    url = f"/api/alerts/{a.id}/snapshot.jpg" if a.has_snapshot else None
    clip = f"/api/alerts/{a.id}/clip.mp4" if has_clip else None
    frame = f"/api/alerts/{a.id}/frame.jpg" if has_clip else None
    visitor = a.visitor_id is not None
    told = None if visitor else confidence(a.distance, tolerance)
    return from_record(
        AlertOut,
        a,
        kind="visitor" if visitor else "person",
        ts=a.started_at,
        snapshot_url=url,
        clip_url=clip,
        frame_url=frame,
        confidence=told,
    )


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
        headers={"Cache-Control": "no-store"},  # nosniff: on every answer (app.py)
    )


def sighting_filter(
    person: str | None = None,
    camera: str | None = None,
    since: Annotated[float | None, Query(description="Unix time, inclusive")] = None,
    until: Annotated[float | None, Query(description="Unix time, exclusive")] = None,
    named: bool = False,
) -> SightingFilter:
    """The query parameters that choose sightings (a dependency of the routes that list
    them)."""
    return SightingFilter(
        person=person or None, camera=camera or None, since=since, until=until, named_only=named
    )


Sightings = Annotated[SightingFilter, Depends(sighting_filter)]


@router.get("/sightings", response_model=SightingPage)
def sightings(
    ctx: Ctx,
    _p: Viewer,
    flt: Sightings,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: BeforeId = None,
) -> SightingPage:
    """Face sightings, newest first, filtered by person, camera and capture time."""
    rows = ctx.store.sightings(replace(flt, before_id=before), limit=limit)
    with_clips = ctx.store.sightings_with_clips(rows)
    return SightingPage(
        items=[sighting_out(s, s.id in with_clips) for s in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


@_jpeg_route("/sightings/{sighting_id}/snapshot.jpg")
def sighting_snapshot(sighting_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    return _jpeg(ctx.store.sighting_snapshot(sighting_id), f"sighting {sighting_id}")


@_jpeg_route("/sightings/{sighting_id}/frame.jpg")
async def sighting_frame(sighting_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    """The whole frame of the sighting as a viewer saw it (boxes, names; unknown faces
    blurred with ``web.privacy_blur``), taken from the clip that covers it: whole frames
    are kept only in clips. 404 when no clip covers the sighting."""
    moment = await run_in_threadpool(ctx.store.sighting_moment, sighting_id)
    return await _frame(ctx, moment, f"sighting {sighting_id}")


@_jpeg_route("/alerts/{alert_id}/frame.jpg")
async def alert_frame(alert_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    """The whole frame at the alert's start, from the alert's clip (as for sightings)."""
    moment = await run_in_threadpool(ctx.store.alert_moment, alert_id)
    return await _frame(ctx, moment, f"alert {alert_id}")


async def _frame(ctx: WebContext, moment: tuple[Path, float] | None, what: str) -> Response:
    if moment is None:
        raise HTTPException(404, f"no clip covers {what}")
    file, offset = moment
    bgr = await ctx.decode_gate.run(lambda: frame_at(file, offset))
    if bgr is None:
        raise HTTPException(404, f"the clip of {what} holds no frame")
    return face_image(encode_jpeg(bgr, ctx.settings.match.annotated_quality), "image/jpeg")


@router.get("/alerts", response_model=list[AlertOut])
def alerts(
    ctx: Ctx,
    _p: Viewer,
    person: str | None = None,
    camera: str | None = None,
    state: Annotated[
        AlertState, Query(description="all, open (not acknowledged) or acknowledged")
    ] = "all",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: BeforeId = None,
) -> list[AlertOut]:
    """Alerts, newest first, filtered by person, camera and state; the next page: the
    last id of this one as ``before``."""
    rows = ctx.store.alerts(
        limit=limit,
        before_id=before,
        person=person or None,
        camera=camera or None,
        state=state,
    )
    with_clips = ctx.store.alerts_with_clips(rows)
    tol = ctx.settings.match.tolerance
    return [alert_out(a, tol, a.id in with_clips) for a in rows]


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
def acknowledge_alert(alert_id: IdPath, ctx: Ctx, p: Viewer) -> AlertOut:
    """Acknowledge one alert (any operator, viewers included: handling alerts is their
    work); audited ``ack_alert``. Acknowledging it again changes nothing."""
    if ctx.store.acknowledge_alerts(p.username, ids=[alert_id]):
        audit(ctx, p, "ack_alert", str(alert_id))
    got = ctx.store.alert(alert_id)
    if got is None:
        raise HTTPException(404, f"no alert {alert_id}")
    tol = ctx.settings.match.tolerance
    return alert_out(got, tol, bool(ctx.store.alerts_with_clips([got])))


@router.post("/alerts/ack", response_model=AckOut)
def acknowledge_alerts(body: AckAllIn, ctx: Ctx, p: Viewer) -> AckOut:
    """Acknowledge every open alert, or those of a person, a camera, up to an id;
    audited ``ack_alerts`` with the filter and the count."""
    done = ctx.store.acknowledge_alerts(
        p.username,
        person=body.person or None,
        camera=body.camera or None,
        up_to_id=body.up_to_id,
    )
    told = body.model_dump(exclude_none=True)
    audit(ctx, p, "ack_alerts", body.person or body.camera or "all", count=len(done), **told)
    return AckOut(acknowledged=done)


@_jpeg_route("/alerts/{alert_id}/snapshot.jpg")
def alert_snapshot(alert_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    return _jpeg(ctx.store.alert_snapshot(alert_id), f"alert {alert_id}")


def _clip(file: Path | None, what: str) -> FileResponse:
    if file is None:
        raise HTTPException(404, f"no clip for {what}")
    return FileResponse(
        file,
        media_type="video/mp4",
        headers={"Cache-Control": "no-store"},  # nosniff: on every answer (app.py)
    )


_MP4: dict[int | str, dict[str, Any]] = {
    200: {"content": {"video/mp4": {}}},
    206: {"description": "Part of the clip (Range)"},
}


@router.get("/alerts/{alert_id}/clip.mp4", response_class=FileResponse, responses=_MP4)
def alert_clip(alert_id: IdPath, ctx: Ctx, p: Viewer, request: Request) -> FileResponse:
    """The MP4 of the alert's appearance (H.264, with pre- and post-roll)."""
    return _clip_audited(ctx, p, request, ctx.store.alert_clip(alert_id), f"alert {alert_id}")


@router.get("/sightings/{sighting_id}/clip.mp4", response_class=FileResponse, responses=_MP4)
def sighting_clip(sighting_id: IdPath, ctx: Ctx, p: Viewer, request: Request) -> FileResponse:
    """The MP4 of the appearance the sighting is part of."""
    file = ctx.store.sighting_clip(sighting_id)
    return _clip_audited(ctx, p, request, file, f"sighting {sighting_id}")


def _clip_audited(
    ctx: WebContext, p: Principal, request: Request, file: Path | None, what: str
) -> FileResponse:
    """The clip, and an audit entry when it starts playing (a player's later Range
    requests for the rest of the same clip are not logged again)."""
    answer = _clip(file, what)
    if ctx.plays.first(p.username, what):
        audit(ctx, p, "clip", what)
    return answer


@router.post("/search", response_model=SearchOut)
async def search(
    ctx: Ctx,
    p: Viewer,
    photo: Annotated[UploadFile, File()],
    tolerance: Annotated[float | None, Form(gt=0, le=2)] = None,
    limit: Annotated[int, Form(ge=1, le=1000)] = 100,
    largest: Annotated[
        bool, Form(description="a photo with several faces: search the largest one")
    ] = False,
    offset: Annotated[
        int, Form(ge=0, le=MAX_SEARCH_OFFSET, description="skip this many (the next page)")
    ] = 0,
) -> SearchOut:
    """Every stored sighting of the face in ``photo``, nearest first: ``limit`` of them
    from ``offset`` (``total`` says how many there are in all); and the visitors it may
    be. A photo with several faces is refused with ``several_faces: true`` unless
    ``largest``."""
    tol = tolerance if tolerance is not None else ctx.settings.match.tolerance
    data = await photo.read(ctx.enroller.max_photo_bytes + 1)
    name = safe_filename(photo.filename)
    try:
        _, emb = await ctx.decode_gate.run(
            lambda: ctx.enroller.embedding(data, name, largest=largest, remember=False)
        )
    except EnrollError as exc:
        several = isinstance(exc, SeveralFaces)
        refused = [{"file": name, "reason": str(exc), "several_faces": several}]
        raise HTTPException(422, {"message": "photo refused", "refused": refused}) from None
    await run_in_threadpool(ctx.sync_index)
    t0 = time.perf_counter()
    hits, total = await run_in_threadpool(ctx.index.search, emb, radius=tol, limit=offset + limit)
    hits = hits[offset:]
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
    audit(
        ctx,
        p,
        "search",
        name,
        tolerance=tol,
        results=total,
        offset=offset,
        visitors=len(visitors),
    )
    return SearchOut(
        total=total,
        searched=len(ctx.index),
        took_ms=round(took, 2),
        tolerance=tol,
        items=items,
        visitors=visitors,
    )
