"""Live views: camera status, MJPEG streams and the server-sent event stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from sauron.config import check_name
from sauron.serve.web.auth import Ctx, Viewer

log = logging.getLogger(__name__)

BOUNDARY = "sauronframe"
router = APIRouter(prefix="/api", tags=["live"])


class CameraOut(BaseModel):
    camera: str
    state: str
    fps: float
    latency_ms: float | None
    frame: int | None
    last_seen_s: float | None
    faces: int
    names: list[str]
    skipped: int


def _camera(name: str) -> str:
    try:
        return check_name(name, "camera name")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/cameras", response_model=list[CameraOut])
def cameras(ctx: Ctx, _p: Viewer) -> list[dict[str, Any]]:
    """Every camera with its state (live, stopped, waiting, reconnecting), frames/s and
    latency."""
    return ctx.hub.status()


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

    async def parts() -> AsyncIterator[bytes]:
        try:
            async for jpeg in ctx.hub.frames(camera, ctx.settings.web.live_fps):
                if await request.is_disconnected():
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

    async def gen() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        next_status = 0.0
        try:
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
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
