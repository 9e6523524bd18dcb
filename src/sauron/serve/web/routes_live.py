"""Live views: camera status, MJPEG streams and the server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from sauron.config import check_name
from sauron.serve.web.auth import Ctx, StillAuthorized, Viewer
from sauron.store.db import SightingFilter

log = logging.getLogger(__name__)

BOUNDARY = "sauronframe"
router = APIRouter(prefix="/api", tags=["live"])


class IngestOut(BaseModel):
    """The camera as the ingest process that reads it last reported it."""

    state: str = Field(description="starting, running, reconnecting, stopped or failed")
    frames: int = Field(description="frames the ingest has published")
    error: str | None = Field(description="why the camera failed, if it did")
    restarts: int = Field(description="camera threads restarted after an unexpected error")
    host: str = Field(description="the machine of the ingest process")
    age_s: float = Field(description="seconds since the report arrived")
    stale: bool = Field(description="no report for a while: the ingest process is gone")


class CameraOut(BaseModel):
    camera: str
    state: str = Field(
        description="live (frames arrive here), else the ingest's state (running, "
        "starting, reconnecting, stopped, failed), else stopped or waiting"
    )
    fps: float
    latency_ms: float | None
    frame: int | None
    last_seen_s: float | None
    faces: int
    names: list[str] = Field(description="watched people on the newest frame")
    skipped: int
    ingest: IngestOut | None = Field(description="the ingest side's report, if any")


class InViewOut(BaseModel):
    person: str
    camera: str
    last_seen: float = Field(description="Unix time the person was last seen there")
    snapshot_url: str | None


#: at most this many recent sightings are read for "in view now"
_IN_VIEW_ROWS = 500


def _camera(name: str) -> str:
    try:
        return check_name(name, "camera name")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/cameras", response_model=list[CameraOut])
def cameras(ctx: Ctx, _p: Viewer) -> list[dict[str, Any]]:
    """Every camera known here (its settings, the cameras whose frames arrived and
    those the ingest processes report on ``<prefix>.cameras``) with its state, frames/s,
    latency, who is on its newest frame and the ingest side's report."""
    return ctx.hub.status()


@router.get("/inview", response_model=list[InViewOut])
def in_view(ctx: Ctx, _p: Viewer) -> list[InViewOut]:
    """Who is in view now, across all cameras: watched people on a live camera's newest
    frame here, and those the record stage stored a sighting of within the last
    ``web.stale_after_s`` seconds (at least 3 sighting intervals), whichever server's
    cameras saw them. Newest first, one row per person and camera."""
    now = time.time()
    window = max(ctx.settings.web.stale_after_s, 3 * ctx.settings.store.sighting_interval_s)
    seen: dict[tuple[str, str], InViewOut] = {}
    rows = ctx.store.sightings(
        SightingFilter(since=now - window, named_only=True), limit=_IN_VIEW_ROWS
    )
    for row in rows:  # newest first: the first row of a pair is its latest
        if row.person and (row.person, row.camera) not in seen:
            url = f"/api/sightings/{row.id}/snapshot.jpg" if row.has_snapshot else None
            seen[(row.person, row.camera)] = InViewOut(
                person=row.person, camera=row.camera, last_seen=row.ts, snapshot_url=url
            )
    for person, camera in ctx.hub.in_view():
        old = seen.get((person, camera))
        seen[(person, camera)] = InViewOut(
            person=person,
            camera=camera,
            last_seen=now,
            snapshot_url=old.snapshot_url if old is not None else None,
        )
    return sorted(seen.values(), key=lambda v: (-v.last_seen, v.person, v.camera))


@router.get(
    "/cameras/{camera}/latest.jpg",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def latest(camera: str, ctx: Ctx, _p: Viewer) -> Response:
    got = ctx.hub.latest(_camera(camera))
    if got is None:
        raise HTTPException(404, f"no frame from camera {camera!r} yet")
    return Response(got[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/cameras/{camera}/stream.mjpeg",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
)
async def stream(camera: str, request: Request, ctx: Ctx, _p: Viewer) -> StreamingResponse:
    """The camera's annotated frames in frame order, as an MJPEG stream for an <img>."""
    camera = _camera(camera)
    if ctx.settings.cameras and camera not in ctx.hub.cameras():
        raise HTTPException(404, f"no camera {camera!r}")  # a server told its cameras
    feed = getattr(request.app.state, "kafka_feed", None)
    if feed is not None:
        feed.want(camera)

    authorized = StillAuthorized(request, ctx)

    async def parts() -> AsyncIterator[bytes]:
        try:
            async for jpeg in ctx.hub.frames(camera, ctx.settings.web.live_fps):
                if await request.is_disconnected() or not await authorized():
                    break
                yield (
                    (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    + jpeg
                    + b"\r\n"
                )
        finally:
            if feed is not None:
                feed.release(camera)

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(request: Request, ctx: Ctx, _p: Viewer) -> StreamingResponse:
    """Server-sent events: ``alert`` the moment one is raised, ``cameras`` every second."""
    queue = ctx.broadcaster.subscribe()
    authorized = StillAuthorized(request, ctx)

    async def gen() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        next_status = 0.0
        try:
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected() and await authorized():
                if loop.time() >= next_status:
                    next_status = loop.time() + 1.0
                    yield f"event: cameras\ndata: {json.dumps(ctx.hub.status())}\n\n".encode()
                try:
                    ev = await asyncio.wait_for(queue.get(), max(0.05, next_status - loop.time()))
                except TimeoutError:
                    continue
                yield f"event: {ev.get('type', 'message')}\ndata: {json.dumps(ev)}\n\n".encode()
        finally:
            ctx.broadcaster.unsubscribe(queue)

    return StreamingResponse(
        gen(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
