"""The watchlist API: people and their photos. Reads for viewers, changes for admins.

Every change reaches the running matchers at once (see ``WatchlistSync``) and is
written to the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from sauron.config import check_name
from sauron.match.enroll import EnrollError
from sauron.serve.web.auth import Admin, Ctx, Viewer, audit
from sauron.serve.web.context import IdPath, WebContext
from sauron.serve.web.routes_history import face_image
from sauron.store import Conflict, NotFound
from sauron.store.accounts import Principal
from sauron.store.db import NewPhoto, PersonInfo

log = logging.getLogger(__name__)

MAX_PHOTOS_PER_REQUEST = 20

router = APIRouter(prefix="/api", tags=["watchlist"])


class PhotoOut(BaseModel):
    id: int
    filename: str
    width: int
    height: int
    url: str


class PersonOut(BaseModel):
    name: str
    created_at: float
    updated_at: float
    photos: list[PhotoOut]


class RenameIn(BaseModel):
    name: str = Field(max_length=64)


def person_out(p: PersonInfo) -> PersonOut:
    return PersonOut(
        name=p.name,
        created_at=p.created_at,
        updated_at=p.updated_at,
        photos=[
            PhotoOut(
                id=ph.id,
                filename=ph.filename,
                width=ph.width,
                height=ph.height,
                url=f"/api/photos/{ph.id}",
            )
            for ph in p.photos
        ],
    )


def valid_name(name: str) -> str:
    try:
        return check_name(name.strip(), "person name")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


async def _checked(ctx: Ctx, photos: list[UploadFile]) -> list[NewPhoto]:
    """Every photo checked; any refusal refuses the request, listing each reason."""
    if not photos:
        raise HTTPException(422, "no photo given")
    if len(photos) > MAX_PHOTOS_PER_REQUEST:
        raise HTTPException(422, f"at most {MAX_PHOTOS_PER_REQUEST} photos at a time")
    good: list[NewPhoto] = []
    refused: list[dict[str, str]] = []
    limit = ctx.enroller.max_photo_bytes
    for up in photos:
        data = await up.read(limit + 1)
        try:
            good.append(await ctx.decode_gate.run(partial(ctx.enroller.check, data, up.filename)))
        except EnrollError as exc:
            refused.append({"file": up.filename or "", "reason": str(exc)})
    if refused:
        raise HTTPException(422, {"message": "photo refused", "refused": refused})
    return good


@router.get("/people", response_model=list[PersonOut])
def list_people(ctx: Ctx, _p: Viewer) -> list[PersonOut]:
    return [person_out(p) for p in ctx.store.list_people()]


@router.get("/people/{name}", response_model=PersonOut)
def get_person(name: str, ctx: Ctx, _p: Viewer) -> PersonOut:
    p = ctx.store.get_person(name)
    if p is None:
        raise HTTPException(404, f"no person named {name!r}")
    return person_out(p)


@contextmanager
def store_refusals() -> Iterator[None]:
    """The store's refusals answered over HTTP: no such person or photo 404, a clash 409."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None


async def _save_photos(
    ctx: WebContext,
    p: Principal,
    action: str,
    name: str,
    photos: list[UploadFile],
    save: Callable[[str, list[NewPhoto]], PersonInfo],
    refused: tuple[type[Exception], int],
) -> PersonOut:
    """Check the photos, store them with ``save`` (its ``refused`` error answered with that
    status), bring the running matchers up to date and audit ``action``."""
    good = await _checked(ctx, photos)
    try:
        person = await run_in_threadpool(save, name, good)
    except refused[0] as exc:
        raise HTTPException(refused[1], str(exc)) from None
    await run_in_threadpool(ctx.watchlists.upsert, ctx.store.wire_person(name))
    audit(ctx, p, action, name, photos=[g.filename for g in good])
    return person_out(person)


@router.post("/people", response_model=PersonOut, status_code=201)
async def enroll(
    ctx: Ctx,
    p: Admin,
    name: Annotated[str, Form(max_length=64)],
    photos: Annotated[list[UploadFile], File()],
) -> PersonOut:
    """Enroll a person from one or more photos (each must show exactly one face)."""
    name = valid_name(name)
    if ctx.store.get_person(name) is not None:
        raise HTTPException(409, f"a person named {name!r} is already enrolled")
    return await _save_photos(ctx, p, "enroll", name, photos, ctx.store.add_person, (Conflict, 409))


@router.post("/people/{name}/photos", response_model=PersonOut)
async def add_photos(
    name: str, ctx: Ctx, p: Admin, photos: Annotated[list[UploadFile], File()]
) -> PersonOut:
    if ctx.store.get_person(name) is None:
        raise HTTPException(404, f"no person named {name!r}")
    return await _save_photos(
        ctx, p, "add_photos", name, photos, ctx.store.add_photos, (NotFound, 404)
    )


@router.patch("/people/{name}", response_model=PersonOut)
def rename(name: str, body: RenameIn, ctx: Ctx, p: Admin) -> PersonOut:
    new = valid_name(body.name)
    with store_refusals():
        person = ctx.store.rename_person(name, new)
    ctx.watchlists.upsert(ctx.store.wire_person(new))
    ctx.watchlists.remove(name)
    audit(ctx, p, "rename", name, to=new)
    return person_out(person)


@router.delete("/people/{name}", status_code=204)
def delete_person(name: str, ctx: Ctx, p: Admin) -> None:
    """Delete a person, their photos and their embeddings, running matchers included."""
    if not ctx.store.delete_person(name):
        raise HTTPException(404, f"no person named {name!r}")
    ctx.watchlists.remove(name)
    audit(ctx, p, "delete_person", name)


@router.delete("/people/{name}/photos/{photo_id}", response_model=PersonOut)
def delete_photo(name: str, photo_id: IdPath, ctx: Ctx, p: Admin) -> PersonOut:
    with store_refusals():
        person = ctx.store.delete_photo(name, photo_id)
    ctx.watchlists.upsert(ctx.store.wire_person(name))
    audit(ctx, p, "delete_photo", name, photo=photo_id)
    return person_out(person)


@router.get(
    "/photos/{photo_id}", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}}
)
def photo(photo_id: IdPath, ctx: Ctx, _p: Viewer) -> Response:
    got = ctx.store.photo(photo_id)
    if got is None:
        raise HTTPException(404, f"no photo {photo_id}")
    return face_image(*got)
