"""Visitors: the faces of no enrolled person, grouped. Reads for viewers; merging,
splitting, promoting to the watchlist and deleting for admins, each audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from sauron.match.enroll import EnrollError
from sauron.serve.web.auth import Admin, Ctx, Viewer, audit
from sauron.serve.web.context import MAX_ID, IdPath, WebContext
from sauron.serve.web.routes_history import face_image
from sauron.serve.web.routes_watchlist import PersonOut, person_out, store_refusals, valid_name
from sauron.store.db import NewPhoto
from sauron.store.visitors import VisitFields, VisitInfo, VisitorInfo, VisitorStore

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["visitors"])


class VisitorOut(BaseModel):
    id: int
    label: str = Field(description='How the web app names it, e.g. "visitor 17"')
    first_seen: float
    last_seen: float
    visits: int
    cameras: list[str]
    crops: list[str] = Field(description="URLs of the best crops (JPEG), best first")


@dataclass(frozen=True)
class VisitOut(VisitFields):
    snapshot_url: str | None


class MergeIn(BaseModel):
    other: int = Field(
        ge=1, le=MAX_ID, description="The visitor merged into this one (it is deleted)"
    )


class SplitOut(BaseModel):
    old: VisitorOut | None = Field(description="The visitor the visit left (null: now empty)")
    new: VisitorOut


class PromoteIn(BaseModel):
    name: str = Field(max_length=64, description="The name to enroll the visitor under")


def visitor_out(v: VisitorInfo) -> VisitorOut:
    return VisitorOut(
        id=v.id,
        label=f"visitor {v.id}",
        first_seen=v.first_seen,
        last_seen=v.last_seen,
        visits=v.visits,
        cameras=list(v.cameras),
        crops=[f"/api/visits/{i}/snapshot.jpg" for i in v.best_visits],
    )


def visit_out(v: VisitInfo) -> VisitOut:
    url = f"/api/visits/{v.id}/snapshot.jpg" if v.has_snapshot else None
    told = {f.name: getattr(v, f.name) for f in fields(VisitFields)}
    return VisitOut(**{**told, "quality": round(v.quality, 4)}, snapshot_url=url)


def visitors_of(ctx: WebContext) -> VisitorStore:
    return VisitorStore(ctx.store, crops=ctx.settings.visitors.crops)


@router.get("/visitors", response_model=list[VisitorOut])
def list_visitors(
    ctx: Ctx,
    _p: Viewer,
    sort: Annotated[
        Literal["visits", "recent"],
        Query(description="visits: most visits first; recent: most recently seen first"),
    ] = "recent",
    camera: Annotated[str | None, Query(description="Only visitors seen on this camera")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[VisitorOut]:
    """Faces of no enrolled person, grouped into visitors as the system runs."""
    rows = visitors_of(ctx).list_visitors(
        sort=sort, camera=camera or None, limit=limit, offset=offset
    )
    return [visitor_out(v) for v in rows]


@router.get("/visitors/{visitor_id}", response_model=VisitorOut)
def get_visitor(visitor_id: IdPath, ctx: Ctx, _p: Viewer) -> VisitorOut:
    with store_refusals():
        return visitor_out(visitors_of(ctx).get(visitor_id))


@router.get("/visitors/{visitor_id}/visits", response_model=list[VisitOut])
def visitor_visits(
    visitor_id: IdPath, ctx: Ctx, _p: Viewer, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[VisitOut]:
    """A visitor's sightings across cameras: one visit per track, newest first."""
    with store_refusals():
        return [visit_out(v) for v in visitors_of(ctx).visits(visitor_id, limit)]


@router.get(
    "/visits/{visit_id}/snapshot.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def visit_snapshot(visit_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    data = visitors_of(ctx).visit_snapshot(visit_id)
    if data is None:
        raise HTTPException(404, f"no snapshot for visit {visit_id}")
    return face_image(data, "image/jpeg")


@router.post("/visitors/{visitor_id}/merge", response_model=VisitorOut)
def merge(visitor_id: IdPath, body: MergeIn, ctx: Ctx, p: Admin) -> VisitorOut:
    """Merge another visitor into this one (the same person seen as two)."""
    if body.other == visitor_id:
        raise HTTPException(422, "cannot merge a visitor with itself")
    with store_refusals():
        merged = visitors_of(ctx).merge(visitor_id, body.other)
    audit(ctx, p, "merge_visitors", f"visitor {visitor_id}", other=body.other)
    return visitor_out(merged)


@router.post("/visits/{visit_id}/split", response_model=SplitOut)
def split(visit_id: IdPath, ctx: Ctx, p: Admin) -> SplitOut:
    """Move a wrongly grouped visit to a new visitor of its own."""
    with store_refusals():
        old, new = visitors_of(ctx).split(visit_id)
    audit(ctx, p, "split_visit", f"visit {visit_id}", new_visitor=new.id)
    return SplitOut(old=visitor_out(old) if old else None, new=visitor_out(new))


@router.post("/visitors/{visitor_id}/promote", response_model=PersonOut, status_code=201)
async def promote(visitor_id: IdPath, body: PromoteIn, ctx: Ctx, p: Admin) -> PersonOut:
    """Enroll the visitor as a watched person from their best crops (each must pass the
    enrollment check: one clear face); the visitor is then deleted."""
    name = valid_name(body.name)
    if ctx.store.get_person(name) is not None:
        raise HTTPException(409, f"a person named {name!r} is already enrolled")
    vs = visitors_of(ctx)
    with store_refusals():
        crops = await run_in_threadpool(vs.best_crops, visitor_id)
    good: list[NewPhoto] = []
    refused: list[str] = []
    for i, crop in enumerate(crops):
        filename = f"visitor-{visitor_id}-{i + 1}.jpg"
        try:
            good.append(await ctx.decode_gate.run(partial(ctx.enroller.check, crop, filename)))
        except EnrollError as exc:
            refused.append(f"{filename}: {exc}")
    if not good:
        # a promotion or deletion at the same moment may have taken the crops away: then
        # the visitor is gone, and the answer is the 404 it would have got a moment later
        with store_refusals():
            await run_in_threadpool(vs.get, visitor_id)
        raise HTTPException(
            422,
            {"message": "no crop of this visitor passes the enrollment check", "refused": refused},
        )
    try:
        with store_refusals():
            person = await run_in_threadpool(ctx.store.add_person, name, good)
    except OperationalError:  # e.g. a deadlock with a change to the same rows: retry later
        raise HTTPException(409, f"visitor {visitor_id} is being changed; try again") from None
    # The visitor is claimed by deleting it: of two promotions at once, only the one whose
    # delete removed it keeps its new person; the other takes its person back.
    try:
        claimed = await run_in_threadpool(vs.delete, visitor_id)
    except OperationalError:
        claimed = False
    if not claimed:
        await run_in_threadpool(ctx.store.delete_person, name)
        raise HTTPException(409, f"visitor {visitor_id} was promoted or deleted meanwhile")
    await run_in_threadpool(ctx.watchlists.upsert, ctx.store.wire_person(name))
    audit(
        ctx,
        p,
        "promote_visitor",
        name,
        visitor=visitor_id,
        photos=[g.filename for g in good],
        refused=len(refused),
    )
    return person_out(person)


@router.delete("/visitors/{visitor_id}", status_code=204)
def delete_visitor(visitor_id: IdPath, ctx: Ctx, p: Admin) -> None:
    """Forget a visitor: its visits, embeddings and crops."""
    if not visitors_of(ctx).delete(visitor_id):
        raise HTTPException(404, f"no visitor {visitor_id}")
    audit(ctx, p, "delete_visitor", f"visitor {visitor_id}")
