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
from sauron.match.enroll import EnrollError, SeveralFaces
from sauron.serve.web.auth import Admin, Ctx, Viewer, audit
from sauron.serve.web.context import IdPath, WebContext
from sauron.serve.web.enrollment import check_free_text, clean_display_name, derive_id
from sauron.serve.web.routes_history import face_image
from sauron.store import Conflict, NotFound
from sauron.store.accounts import Principal
from sauron.store.db import NewPhoto, PersonDetails, PersonInfo

log = logging.getLogger(__name__)

MAX_PHOTOS_PER_REQUEST = 20
MAX_NOTE_CHARS = 2000

router = APIRouter(prefix="/api", tags=["watchlist"])


class PhotoOut(BaseModel):
    id: int
    filename: str
    width: int
    height: int
    url: str


class PersonOut(BaseModel):
    name: str = Field(description="the id: what sightings, alerts and URLs carry")
    display_name: str = Field(description="the name as written (the id when none was given)")
    notes: str
    reason: str = Field(description="why this person is watched for")
    last_seen: float | None = Field(description="Unix time of the newest stored sighting")
    last_camera: str | None = Field(description="the camera of that sighting")
    created_at: float
    updated_at: float
    photos: list[PhotoOut]


class PersonPatch(BaseModel):
    """What to change; a field left out stays as it is."""

    name: str | None = Field(
        None, max_length=64, description="a new id (past sightings and alerts follow)"
    )
    display_name: str | None = Field(None, max_length=200, description="the name as written")
    notes: str | None = Field(None, max_length=MAX_NOTE_CHARS)
    reason: str | None = Field(None, max_length=MAX_NOTE_CHARS)


def person_out(p: PersonInfo) -> PersonOut:
    return PersonOut(
        name=p.name,
        display_name=p.display_name,
        notes=p.notes,
        reason=p.reason,
        last_seen=p.last_seen,
        last_camera=p.last_camera,
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
        return check_name(name.strip(), "person id")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _valid_display(name: str) -> str:
    try:
        return clean_display_name(name)
    except ValueError as exc:
        raise HTTPException(422, f"display name {name!r}: {exc}") from None


def _valid_note(text: str, what: str) -> str:
    try:
        return check_free_text(text.strip(), what)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _free_id(ctx: WebContext, display: str) -> str:
    """The id derived from the name, numbered on ("-2", "-3") when another person has it."""
    base = derive_id(display)
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base[: 64 - len(str(n)) - 1]}-{n}"
        if ctx.store.get_person(candidate) is None:
            return candidate
    raise HTTPException(409, f"too many people with ids derived from {display!r}")


async def _checked(ctx: Ctx, photos: list[UploadFile], largest: bool = False) -> list[NewPhoto]:
    """Every photo checked; any refusal refuses the request, listing each reason."""
    if not photos:
        raise HTTPException(422, "no photo given")
    if len(photos) > MAX_PHOTOS_PER_REQUEST:
        raise HTTPException(422, f"at most {MAX_PHOTOS_PER_REQUEST} photos at a time")
    good: list[NewPhoto] = []
    refused: list[dict[str, str | bool]] = []
    limit = ctx.enroller.max_photo_bytes
    for up in photos:
        data = await up.read(limit + 1)
        try:
            check = partial(ctx.enroller.check, data, up.filename, largest=largest)
            good.append(await ctx.decode_gate.run(check))
        except EnrollError as exc:
            refused.append(
                {
                    "file": up.filename or "",
                    "reason": str(exc),
                    "several_faces": isinstance(exc, SeveralFaces),
                }
            )
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
    largest: bool = False,
    **told: str,
) -> PersonOut:
    """Check the photos, store them with ``save`` (its ``refused`` error answered with that
    status), bring the running matchers up to date and audit ``action`` (with ``told``)."""
    good = await _checked(ctx, photos, largest)
    try:
        person = await run_in_threadpool(save, name, good)
    except refused[0] as exc:
        raise HTTPException(refused[1], str(exc)) from None
    await run_in_threadpool(ctx.watchlists.upsert, ctx.store.wire_person(name))
    audit(ctx, p, action, name, photos=[g.filename for g in good], largest=largest, **told)
    return person_out(person)


LargestForm = Annotated[
    bool,
    Form(description="a photo with several faces: take the largest one instead of refusing"),
]


@router.post("/people", response_model=PersonOut, status_code=201)
async def enroll(
    ctx: Ctx,
    p: Admin,
    name: Annotated[str, Form(max_length=200, description="the name as written: any letters")],
    photos: Annotated[list[UploadFile], File()],
    id: Annotated[
        str | None, Form(max_length=64, description="the id; left out: derived from the name")
    ] = None,
    notes: Annotated[str, Form(max_length=MAX_NOTE_CHARS)] = "",
    reason: Annotated[str, Form(max_length=MAX_NOTE_CHARS, description="why watched")] = "",
    largest: LargestForm = False,
) -> PersonOut:
    """Enroll a person from one or more photos (each must show exactly one face, or
    ``largest``). The id is derived from the name ("José García" -> ``jose-garcia``,
    numbered on when taken) unless given; a name already enrolled is refused (409)."""
    display = _valid_display(name)
    if ctx.store.person_by_display_name(display) is not None:
        raise HTTPException(409, f"a person named {display!r} is already enrolled")
    if id:
        pid = valid_name(id)
        if ctx.store.get_person(pid) is not None:
            raise HTTPException(409, f"a person with the id {pid!r} is already enrolled")
    else:
        pid = _free_id(ctx, display)
    details = PersonDetails(  # a name that is its own id is kept as the id (renames follow)
        display_name=None if display == pid else display,
        notes=_valid_note(notes, "notes"),
        reason=_valid_note(reason, "reason"),
    )

    def save(person_id: str, good: list[NewPhoto]) -> PersonInfo:
        return ctx.store.add_person(person_id, good, details)

    return await _save_photos(
        ctx, p, "enroll", pid, photos, save, (Conflict, 409), largest, display_name=display
    )


@router.post("/people/{name}/photos", response_model=PersonOut)
async def add_photos(
    name: str,
    ctx: Ctx,
    p: Admin,
    photos: Annotated[list[UploadFile], File()],
    largest: LargestForm = False,
) -> PersonOut:
    """Add photos of an enrolled person (each with one face, or ``largest``)."""
    if ctx.store.get_person(name) is None:
        raise HTTPException(404, f"no person named {name!r}")
    return await _save_photos(
        ctx, p, "add_photos", name, photos, ctx.store.add_photos, (NotFound, 404), largest
    )


@router.patch("/people/{name}", response_model=PersonOut)
def edit_person(name: str, body: PersonPatch, ctx: Ctx, p: Admin) -> PersonOut:
    """Change the name as written, the notes or the reason (audited ``edit_person``),
    and/or the id (``name``; audited ``rename``: past sightings and alerts follow)."""
    details = PersonDetails(
        display_name=None if body.display_name is None else _valid_display(body.display_name),
        notes=None if body.notes is None else _valid_note(body.notes, "notes"),
        reason=None if body.reason is None else _valid_note(body.reason, "reason"),
    )
    changed = {k: v for k, v in vars(details).items() if v is not None}
    if body.name is None and not changed:
        raise HTTPException(422, "nothing to change: give name, display_name, notes or reason")
    # everything is checked before anything changes: a refused request changes nothing
    person = ctx.store.get_person(name)
    if person is None:
        raise HTTPException(404, f"no person named {name!r}")
    new = valid_name(body.name) if body.name is not None and body.name != name else None
    if new is not None and ctx.store.get_person(new) is not None:
        raise HTTPException(409, f"a person with the id {new!r} is already enrolled")
    if details.display_name is not None:
        other = ctx.store.person_by_display_name(details.display_name)
        if other is not None and other.name != name:
            raise HTTPException(409, f"{other.name!r} is already named {details.display_name!r}")
    with store_refusals():
        if new is not None:
            person = ctx.store.rename_person(name, new)
            ctx.watchlists.upsert(ctx.store.wire_person(new))
            ctx.watchlists.remove(name)
            audit(ctx, p, "rename", name, to=new)
        if changed:
            person = ctx.store.set_person_details(new or name, details)
            audit(ctx, p, "edit_person", new or name, **changed)
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
