"""Authentication and accounts: log-in sessions, API tokens, roles, the audit log.

Every route but ``/api/login`` and ``/api/health`` needs a token: ``Authorization:
Bearer <token>`` (API tokens, scripts) or the ``sauron_session`` cookie set by log-in
(the pages; HttpOnly, SameSite=Strict). A request that writes with the cookie must also
send ``X-Requested-With: sauron``, which a cross-site form cannot (CSRF). Viewers may
watch, read history and search; admins also change the watchlist and accounts. Anyone
may change their own password (giving the current one); admins set anyone's. A change
revokes the user's other tokens. Log-out revokes the token it was sent with.

Password checks go through :mod:`sauron.serve.web.throttle`: each attempt is counted
before the (slow, bounded) hash is computed, per user name and address, per address and
per user name; an admin can lift a user's lock.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator

from sauron.config import check_name
from sauron.serve.web.context import (
    BeforeId,
    IdPath,
    WebContext,
    from_record,
    get_context,
)
from sauron.serve.web.enrollment import check_free_text
from sauron.serve.web.throttle import Lockout, Throttled, client_address
from sauron.store import Conflict, NotFound
from sauron.store.accounts import PasswordRejected, Principal, Role, UserInfo
from sauron.store.db import AuditInfo

log = logging.getLogger(__name__)

SESSION_COOKIE = "sauron_session"
CSRF_HEADER = "x-requested-with"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

Ctx = Annotated[WebContext, Depends(get_context)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def current_principal(request: Request, ctx: Ctx) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    from_cookie = False
    if scheme.lower() == "bearer" and token:
        token = token.strip()
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
        from_cookie = True
    if not token:
        raise _unauthorized("not logged in: send a bearer token or log in")
    principal = ctx.accounts.authenticate(token)
    if principal is None:
        raise _unauthorized("token unknown or expired: log in again")
    request.state.token = token  # a password change keeps the caller's own token
    if (
        from_cookie
        and request.method not in _SAFE_METHODS
        and request.headers.get(CSRF_HEADER) != "sauron"
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"cookie-authenticated writes need the header {CSRF_HEADER}: sauron",
        )
    return principal


#: A stream that stays open (live view, events) checks its token again this often, so
#: that log-out, a disabled account, a password reset or the token's expiry ends it.
RECHECK_S = 2.0


class StillAuthorized:
    """For a long-lived response: ``await check()`` is False once the token that opened
    it no longer authenticates (looked up at most every :data:`RECHECK_S`)."""

    def __init__(self, request: Request, ctx: WebContext, every: float = RECHECK_S) -> None:
        self._token: str = getattr(request.state, "token", "")
        self._accounts = ctx.accounts
        self._every = every
        self._next = time.monotonic() + every
        self._ok = True

    async def __call__(self) -> bool:
        if self._ok and time.monotonic() >= self._next:
            self._next = time.monotonic() + self._every
            try:
                found = await run_in_threadpool(self._accounts.authenticate, self._token)
            except Exception as exc:  # the store is gone (the server stops) or failing:
                log.info("web: ending a stream, its token could not be checked: %s", exc)
                found = None  # end the stream cleanly rather than abort it
            self._ok = found is not None
        return self._ok


def require_admin(p: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not p.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return p


Viewer = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(require_admin)]


def audit(
    ctx: WebContext, who: Principal | str, action: str, target: str, **detail: object
) -> None:
    name = who if isinstance(who, str) else who.username
    ctx.store.audit(name, action, target, json.dumps(detail, default=str) if detail else "")


class LoginRequest(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SessionOut(BaseModel):
    username: str
    role: Role
    token: str | None = Field(default=None, description="Also usable as a bearer token")
    expires_at: float | None = None


class UserIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024, description="At least 10 characters, not common")
    role: Role = "viewer"


class UserOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: float


class UserPatch(BaseModel):
    """What to change of a user; a field left out stays as it is."""

    role: Role | None = None
    disabled: bool | None = Field(
        None, description="a disabled user cannot log in, and their tokens stop working"
    )


class PasswordIn(BaseModel):
    current_password: str | None = Field(
        default=None, max_length=1024, description="Needed to change your own password"
    )
    new_password: str = Field(max_length=1024, description="At least 10 characters, not common")
    keep_api_tokens: bool = Field(
        default=False, description="Keep the user's API tokens (log-in sessions always end)"
    )


class PasswordOut(BaseModel):
    username: str
    revoked_tokens: int = Field(description="Sessions and tokens of the user that now fail")


class TokenIn(BaseModel):
    name: str = Field(max_length=64)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return check_free_text(v, "a token name")

    username: str | None = Field(default=None, description="Whose token; default: the caller")
    days: float | None = Field(
        90.0,
        gt=0,
        le=3650,
        description="Life in days, at most web.max_token_days (every token expires)",
    )


class TokenOut(BaseModel):
    id: int
    username: str
    name: str
    created_at: float
    expires_at: float | None
    token: str | None = Field(default=None, description="Shown once, when created")


# An entry of the audit log as the API answers it: the store's record, under its API name.
@dataclass(frozen=True)
class AuditOut(AuditInfo):
    pass


# A lock the log-in limits hold now, as the API answers it.
@dataclass(frozen=True)
class LockoutOut(Lockout):
    pass


class UnlockOut(BaseModel):
    username: str
    cleared: int = Field(description="Counters cleared (one per address, and the user's own)")


router = APIRouter(prefix="/api", tags=["auth"])

_LOCKED = {
    "pair": "too many failed log-ins for this user from your address",
    "address": "too many failed log-ins from your address",
    "user": "too many failed log-ins for this user",
}


async def checked_password(
    ctx: WebContext, username: str, password: str, request: Request, failure: str
) -> UserInfo | None:
    """The user if ``password`` is theirs. The attempt counts against the limits before
    the hash is computed (429 past them; 503 when too many hashes wait), and a failure
    goes to the audit log as ``failure``."""
    address = client_address(request)
    try:
        attempt = ctx.throttle.begin(username, address)
    except Throttled as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{_LOCKED[exc.scope]}; try again in {exc.retry_after_s} s or ask an admin to unlock",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    try:
        user = await ctx.hash_gate.run(lambda: ctx.accounts.check_password(username, password))
    except HTTPException:  # busy (503): the password was never checked
        ctx.throttle.cancel(attempt)
        raise
    if user is None:
        await run_in_threadpool(ctx.failures.record, failure, username, address)
        return None
    ctx.throttle.succeeded(attempt)
    return user


@router.post("/login", response_model=SessionOut)
async def login(body: LoginRequest, response: Response, request: Request, ctx: Ctx) -> SessionOut:
    user = await checked_password(ctx, body.username, body.password, request, "login_failed")
    if user is None:
        raise _unauthorized("wrong user name or password")
    ttl = ctx.settings.web.session_hours * 3600
    token, info = await run_in_threadpool(
        ctx.accounts.issue_token, user.id, kind="session", name="web", ttl_s=ttl
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    await run_in_threadpool(
        audit, ctx, user.username, "login", user.username, client=client_address(request)
    )
    return SessionOut(
        username=user.username, role=user.role, token=token, expires_at=info.expires_at
    )


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, ctx: Ctx, _p: Viewer) -> None:
    """End the session: the token this request was sent with (cookie or bearer) is
    revoked, and so is the cookie's if both were sent."""
    for token in {request.state.token, request.cookies.get(SESSION_COOKIE)}:
        if token:
            ctx.accounts.revoke(token)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me", response_model=SessionOut)
def me(p: Viewer) -> SessionOut:
    return SessionOut(username=p.username, role=p.role)


@router.get("/users", response_model=list[UserOut], tags=["admin"])
def list_users(ctx: Ctx, _p: Admin) -> list[UserOut]:
    return [
        UserOut(username=u.username, role=u.role, disabled=u.disabled, created_at=u.created_at)
        for u in ctx.accounts.list_users()
    ]


@router.post("/users", response_model=UserOut, status_code=201, tags=["admin"])
def create_user(body: UserIn, ctx: Ctx, p: Admin) -> UserOut:
    try:
        check_name(body.username, "user name")
        u = ctx.accounts.create_user(body.username, body.password, body.role)
    except ValueError as exc:  # the name, or the password policy (never the password)
        raise HTTPException(422, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    audit(ctx, p, "create_user", u.username, role=u.role)
    return UserOut(username=u.username, role=u.role, disabled=u.disabled, created_at=u.created_at)


@router.patch("/users/{username}", response_model=UserOut, tags=["admin"])
def update_user(username: str, body: UserPatch, ctx: Ctx, p: Admin) -> UserOut:
    """Change a user's role, or disable or enable them (audited ``change_role``,
    ``disable_user``, ``enable_user``). An admin cannot demote or disable themselves."""
    if body.role is None and body.disabled is None:
        raise HTTPException(422, "nothing to change: give role or disabled")
    if username == p.username and (body.role == "viewer" or body.disabled):
        raise HTTPException(409, "you cannot demote or disable your own account")
    try:
        before = next((u for u in ctx.accounts.list_users() if u.username == username), None)
        u = ctx.accounts.update_user(username, role=body.role, disabled=body.disabled)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    if before is not None and before.role != u.role:
        audit(ctx, p, "change_role", username, role=u.role, was=before.role)
    if before is not None and before.disabled != u.disabled:
        audit(ctx, p, "disable_user" if u.disabled else "enable_user", username)
    return UserOut(username=u.username, role=u.role, disabled=u.disabled, created_at=u.created_at)


@router.delete("/users/{username}", status_code=204, tags=["admin"])
def delete_user(username: str, ctx: Ctx, p: Admin) -> None:
    if username == p.username:
        raise HTTPException(409, "you cannot delete your own account")
    try:
        ctx.accounts.delete_user(username)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    audit(ctx, p, "delete_user", username)


@router.post("/users/{username}/unlock", response_model=UnlockOut, tags=["admin"])
def unlock_user(username: str, ctx: Ctx, p: Admin) -> UnlockOut:
    """Lift the log-in locks of ``username`` from every address (not an address's own
    lock over all user names)."""
    cleared = ctx.throttle.unlock(username)
    audit(ctx, p, "unlock", username, cleared=cleared)
    return UnlockOut(username=username, cleared=cleared)


@router.get("/lockouts", response_model=list[LockoutOut], tags=["admin"])
def lockouts(ctx: Ctx, _p: Admin) -> list[LockoutOut]:
    """The log-in locks in force now: per user name and address, per address, per user."""
    return [LockoutOut(**asdict(x)) for x in ctx.throttle.lockouts()]


@router.post("/users/{username}/password", response_model=PasswordOut)
async def change_password(
    username: str, body: PasswordIn, request: Request, ctx: Ctx, p: Viewer
) -> PasswordOut:
    """Change your own password (``current_password`` needed), or, as an admin, set
    another user's. Every other session of the user ends, and every API token of theirs
    unless ``keep_api_tokens``; the token of this request keeps working."""
    own = username == p.username
    if not own and not p.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only an admin can set another user's password"
        )
    if own:
        if body.current_password is None:
            raise HTTPException(422, "give current_password to change your own password")
        checked = await checked_password(
            ctx, p.username, body.current_password, request, "password_change_failed"
        )
        # 403, not 401: the caller's token is fine, and 401 logs the pages out.
        if checked is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "the current password is wrong")
    try:
        revoked = await ctx.hash_gate.run(
            lambda: ctx.accounts.set_password(
                username,
                body.new_password,
                keep_token=getattr(request.state, "token", None) if own else None,
                keep_api_tokens=body.keep_api_tokens,
            )
        )
    except PasswordRejected as exc:
        raise HTTPException(422, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    action = "change_password" if own else "reset_password"
    await run_in_threadpool(audit, ctx, p, action, username, revoked=revoked)
    return PasswordOut(username=username, revoked_tokens=revoked)


@router.get("/tokens", response_model=list[TokenOut], tags=["admin"])
def list_tokens(ctx: Ctx, _p: Admin) -> list[TokenOut]:
    return [from_record(TokenOut, t) for t in ctx.accounts.list_tokens("api")]


@router.post("/tokens", response_model=TokenOut, status_code=201, tags=["admin"])
def create_token(body: TokenIn, ctx: Ctx, p: Admin) -> TokenOut:
    """An API token (shown once) for ``username``, by default the calling admin. It
    expires after ``days``, at most ``web.max_token_days``; the audit log names its owner."""
    max_days = ctx.settings.web.max_token_days
    if body.days is None or body.days > max_days:
        raise HTTPException(
            422, f"every token expires: give days, at most {max_days:g} (web.max_token_days)"
        )
    owner = body.username or p.username
    try:
        user_id = ctx.accounts.user_id(owner)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    token, t = ctx.accounts.issue_token(
        user_id, kind="api", name=body.name, ttl_s=body.days * 86400
    )
    audit(ctx, p, "create_token", body.name, owner=owner, id=t.id, expires_at=t.expires_at)
    return from_record(TokenOut, t, token=token)


@router.delete("/tokens/{token_id}", status_code=204, tags=["admin"])
def delete_token(token_id: IdPath, ctx: Ctx, p: Admin) -> None:
    try:
        owner = ctx.accounts.delete_token(token_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    audit(ctx, p, "delete_token", str(token_id), owner=owner)


@router.get("/audit", response_model=list[AuditOut], tags=["admin"])
def audit_log(
    ctx: Ctx,
    _p: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: BeforeId = None,
    username: Annotated[str | None, Query(max_length=64, description="who did it")] = None,
    action: Annotated[str | None, Query(max_length=32, description="e.g. enroll")] = None,
) -> list[AuditOut]:
    """The audit log, newest first, filtered by user and action; the next page: the last
    id of this one as ``before``."""
    rows = ctx.store.audit_log(
        limit=limit, before_id=before, username=username or None, action=action or None
    )
    return [AuditOut(**asdict(a)) for a in rows]
