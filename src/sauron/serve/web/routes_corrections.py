"""Corrections of a wrong name, on a sighting or an alert, by an admin, audited.

"Not this person" stores the face as a negative example of the person: the running
matchers receive it at once and do not give that face the name again (see
``Watchlist.match``). "This is X" adds the sighting's crop to X's photos after the same
check as any enrollment photo (one clear face).
"""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from sauron.match.enroll import EnrollError
from sauron.serve.web.auth import Admin, Ctx, audit
from sauron.serve.web.context import IdPath, WebContext
from sauron.store import NotFound
from sauron.store.accounts import Principal
from sauron.store.db import SightingInfo


class NotThisIn(BaseModel):
    person: str | None = Field(
        None, max_length=64, description="Who it is not; default: the name it was given"
    )


class ThisIsIn(BaseModel):
    person: str = Field(max_length=64, description="The enrolled person it is")


class CorrectionOut(BaseModel):
    id: int
    kind: str = Field(description="not: a negative example; is: added to the person's photos")
    person: str


log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["corrections"])


async def _sighting_face(
    ctx: WebContext, sighting_id: int
) -> tuple[SightingInfo, np.ndarray | None, bytes | None]:
    try:
        return await run_in_threadpool(ctx.store.sighting_face, sighting_id)
    except NotFound:
        raise HTTPException(404, f"no sighting {sighting_id}") from None


async def _not_this(
    ctx: WebContext,
    p: Principal,
    person: str | None,
    embedding: np.ndarray,
    target: str,
    sighting_id: int | None = None,
) -> CorrectionOut:
    if not person:
        raise HTTPException(422, f"{target} has no name to correct; say whom it is not")
    if ctx.store.get_person(person) is None:
        raise HTTPException(404, f"no person named {person!r}")
    cid = await run_in_threadpool(
        partial(ctx.store.add_correction, p.username, "not", person, embedding, sighting_id)
    )
    await run_in_threadpool(ctx.watchlists.upsert, ctx.store.wire_person(person))
    audit(ctx, p, "not_this_person", person, about=target, correction=cid)
    return CorrectionOut(id=cid, kind="not", person=person)


@router.post("/sightings/{sighting_id}/not-this-person", response_model=CorrectionOut)
async def sighting_not_this_person(
    sighting_id: IdPath, body: NotThisIn, ctx: Ctx, p: Admin
) -> CorrectionOut:
    """The face of this sighting is not the person it was named after (or ``person``):
    it becomes a negative example of them and the sighting is unnamed."""
    info, emb, _ = await _sighting_face(ctx, sighting_id)
    if emb is None:
        raise HTTPException(422, f"sighting {sighting_id} has no face embedding")
    person = body.person or info.person
    return await _not_this(ctx, p, person, emb, f"sighting {sighting_id}", sighting_id)


@router.post("/alerts/{alert_id}/not-this-person", response_model=CorrectionOut)
async def alert_not_this_person(alert_id: IdPath, ctx: Ctx, p: Admin) -> CorrectionOut:
    """The face of this alert is not the person it named: its snapshot's face becomes a
    negative example of them."""
    alert = ctx.store.alert(alert_id)
    snapshot = ctx.store.alert_snapshot(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    if snapshot is None:
        raise HTTPException(422, f"alert {alert_id} kept no snapshot to learn from")
    source = f"alert {alert_id}"
    try:
        _, emb = await ctx.decode_gate.run(
            partial(ctx.enroller.embedding, snapshot, source, largest=True, remember=False)
        )
    except EnrollError as exc:
        raise HTTPException(422, str(exc)) from None
    return await _not_this(ctx, p, alert.person, emb, source)


@router.post("/sightings/{sighting_id}/this-is", response_model=CorrectionOut)
async def sighting_this_is(
    sighting_id: IdPath, body: ThisIsIn, ctx: Ctx, p: Admin
) -> CorrectionOut:
    """The face of this sighting is ``person``: its crop is added to their photos (it
    must pass the enrollment check) and the sighting is named after them."""
    person = ctx.store.get_person(body.person)
    if person is None:
        raise HTTPException(404, f"no person named {body.person!r}")
    filename = f"sighting-{sighting_id}.jpg"
    if any(ph.filename == filename for ph in person.photos):  # said twice: one photo
        raise HTTPException(409, f"the face of sighting {sighting_id} is already {body.person}'s")
    _, _, snapshot = await _sighting_face(ctx, sighting_id)
    if snapshot is None:
        raise HTTPException(422, f"sighting {sighting_id} kept no snapshot to enroll")
    try:
        photo = await ctx.decode_gate.run(partial(ctx.enroller.check, snapshot, filename))
    except EnrollError as exc:
        raise HTTPException(
            422, {"message": "photo refused", "refused": [{"file": filename, "reason": str(exc)}]}
        ) from None
    await run_in_threadpool(ctx.store.add_photos, body.person, [photo])
    cid = await run_in_threadpool(
        partial(
            ctx.store.add_correction, p.username, "is", body.person, photo.embedding, sighting_id
        )
    )
    await run_in_threadpool(ctx.watchlists.upsert, ctx.store.wire_person(body.person))
    audit(ctx, p, "this_is", body.person, about=f"sighting {sighting_id}", correction=cid)
    return CorrectionOut(id=cid, kind="is", person=body.person)
