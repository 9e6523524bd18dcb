"""The FastAPI application factory: routes, limits, headers and the operator's pages.

``create_app(ctx)`` takes everything the routes use in one :class:`WebContext`, so tests
and ``sauron run``/``sauron web`` build the app the same way. The pages (``static/``)
are plain HTML/JS/CSS served by the app itself and use the same JSON API
(OpenAPI document at ``/api/openapi.json``, browsable at ``/api/docs`` with the Swagger UI
of the ``swagger-ui-py`` package, served from here under the same CSP: no CDN).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from sauron import __version__
from sauron.serve.web import (
    auth,
    routes_appearances,
    routes_corrections,
    routes_history,
    routes_live,
    routes_visitors,
    routes_watchlist,
)
from sauron.serve.web.auth import SESSION_COOKIE
from sauron.serve.web.context import WebContext
from sauron.store import Conflict, NotFound

log = logging.getLogger(__name__)

STATIC_DIR = Path(str(resources.files("sauron.serve.web") / "static"))


def swagger_ui_dir() -> Path:
    """Swagger UI's files as the ``swagger-ui-py`` package ships them (found, not imported:
    its Python side is for other frameworks)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: pip install swagger-ui-py")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


#: The only routes that take a body from someone not logged in.
_OPEN_WRITES = {"/api/login"}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _has_credentials(headers: dict[bytes, bytes]) -> bool:
    """A bearer token or the session cookie is there (whether it is valid is the app's
    business)."""
    if headers.get(b"authorization", b"").strip():
        return True
    cookies = headers.get(b"cookie", b"").decode("latin-1")
    return any(c.strip().startswith(f"{SESSION_COOKIE}=") for c in cookies.split(";"))


class Gatekeeper:
    """Refuses a request body over ``max_bytes`` with 413, before it is parsed: by its
    Content-Length when given, else by counting the chunks as they arrive (whatever the
    app would answer to the cut-off body, the client gets the 413). A write to the API
    without any credentials is answered 401 before its body is read, so that nobody
    logged out can make the server take in and parse uploads. Adds the security headers
    to every response, and ``Cache-Control: no-store`` to the API's that set none (they
    carry people's names, notes and sightings)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse(
            {"detail": f"the request is too large: the limit is {self.max_bytes} bytes"},
            status_code=413,
        )
        started = over = False
        api = scope["path"].startswith("/api/")

        async def secure_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                headers = [*msg.get("headers", []), *_SECURITY_HEADERS]
                if api and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                msg = {**msg, "headers": headers}
            await send(msg)

        request_headers = dict(scope.get("headers") or [])
        if (
            api
            and scope["method"] in _WRITES
            and scope["path"] not in _OPEN_WRITES
            and not _has_credentials(request_headers)
        ):
            await JSONResponse(
                {"detail": "not logged in: send a bearer token or log in"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, secure_send)
            return
        length = request_headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await too_big(scope, receive, secure_send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return msg

        async def app_send(msg: Message) -> None:
            if not over:
                await secure_send(msg)

        with contextlib.suppress(_TooLarge):  # answered below
            await self.app(scope, limited, app_send)
        if over and not started:
            await too_big(scope, receive, secure_send)


class _TooLarge(Exception):
    pass


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field, without echoing what was sent (it may be a password)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    told = [{k: v for k, v in e.items() if k != "input"} for e in errors]
    return JSONResponse({"detail": jsonable_encoder(told)}, status_code=422)


def _refused(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handler


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(
        title="Sauron",
        version=__version__,
        description="Live camera views, watchlist, alerts, history and search by "
        "photo. Authenticate with `Authorization: Bearer <token>` (POST "
        "/api/login or an API token from POST /api/tokens).",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # the store's refusals, wherever a route lets one through: 404 and 409, never 500
    app.add_exception_handler(NotFound, _refused(404))
    app.add_exception_handler(Conflict, _refused(409))
    for router in (
        auth.router,
        routes_watchlist.router,
        routes_live.router,
        routes_history.router,
        routes_appearances.router,
        routes_visitors.router,
        routes_corrections.router,
    ):
        app.include_router(router)

    @app.get("/api/health", tags=["meta"])
    async def health() -> JSONResponse:
        """Which long-running parts are alive; 503 when one is dead or failed. Run on the
        event loop (it only reads a few flags under short locks), so a busy thread pool
        (uploads, password hashes) does not make the health check wait."""
        parts = ctx.health() if ctx.health is not None else {}
        ok = not any(state in ("dead", "failed") for state in parts.values())
        body = {"ok": ok, "version": __version__, "cameras": len(ctx.hub.cameras())}
        return JSONResponse({**body, "parts": parts}, status_code=200 if ok else 503)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/api/docs/assets", StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    max_bytes = int(ctx.settings.web.max_upload_mb * 1024 * 1024)
    app.add_middleware(Gatekeeper, max_bytes=max_bytes)
    if ctx.settings.web.trusted_proxies:  # the client named by X-Forwarded-For
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=ctx.settings.web.trusted_proxies)
    return app
