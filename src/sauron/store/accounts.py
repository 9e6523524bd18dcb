"""Accounts: users with a role, passwords hashed with Argon2id, and bearer tokens.

A token is 32 random bytes (URL-safe text); only its SHA-256 is stored, so a copy of the
database cannot be used to log in. Log-in sessions and API tokens are both tokens, told
apart by ``kind``; each may expire.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from sauron.store import Conflict, NotFound
from sauron.store.db import Store, rowcount
from sauron.store.models import Token, User

log = logging.getLogger(__name__)

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
_hasher = PasswordHasher()
# Verifying against this keeps a log-in for an unknown user as slow as for a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Principal:
    """Who a request is from."""

    user_id: int
    username: str
    role: Role
    token_kind: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    role: Role
    disabled: bool
    created_at: float


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    kind: str
    name: str
    created_at: float
    expires_at: float | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _user_info(u: User) -> UserInfo:
    role: Role = "admin" if u.role == "admin" else "viewer"
    return UserInfo(u.id, u.username, role, u.disabled, u.created_at)


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def count_users(self) -> int:
        with self.store.session() as s:
            return len(s.scalars(select(User.id)).all())

    def create_user(self, username: str, password: str, role: Role) -> UserInfo:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, but got {role!r}")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
        password_hash = _hasher.hash(password)  # slow on purpose: not inside a transaction
        with self.store.session() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise Conflict(f"user {username!r} already exists")
            u = User(
                username=username,
                password_hash=password_hash,
                role=role,
                disabled=False,
                created_at=time.time(),
            )
            s.add(u)
            s.flush()
            return _user_info(u)

    def list_users(self) -> list[UserInfo]:
        with self.store.session() as s:
            return [_user_info(u) for u in s.scalars(select(User).order_by(User.username))]

    def delete_user(self, username: str) -> None:
        with self.store.session() as s:
            if not rowcount(s.execute(delete(User).where(User.username == username))):
                raise NotFound(f"no user {username!r}")

    def check_password(self, username: str, password: str) -> UserInfo | None:
        with self.store.session() as s:
            u = s.scalar(select(User).where(User.username == username))
            info = None if u is None else _user_info(u)
            stored = _DUMMY_HASH if u is None else u.password_hash
        try:  # slow on purpose, and outside any transaction
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if info is None or info.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            new_hash = _hasher.hash(password)
            with self.store.session() as s:
                s.execute(update(User).where(User.id == info.id).values(password_hash=new_hash))
        return info

    def set_password(
        self,
        username: str,
        password: str,
        *,
        keep_token: str | None = None,
        keep_api_tokens: bool = False,
    ) -> int:
        """Replace ``username``'s password and revoke their tokens: every log-in session
        and, unless ``keep_api_tokens``, every API token, but never ``keep_token`` (the
        token of the request that made the change, so its caller stays logged in).

        The new hash and the revocation are one transaction. Returns how many tokens
        were revoked.
        """
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
        password_hash = _hasher.hash(password)  # slow on purpose: not inside a transaction
        with self.store.session() as s:
            user_id = s.scalar(select(User.id).where(User.username == username))
            if user_id is None:
                raise NotFound(f"no user {username!r}")
            s.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
            revoke = delete(Token).where(Token.user_id == user_id)
            if keep_token:
                revoke = revoke.where(Token.token_hash != token_hash(keep_token))
            if keep_api_tokens:
                revoke = revoke.where(Token.kind != "api")
            return rowcount(s.execute(revoke))

    def issue_token(
        self, user_id: int, *, kind: str, name: str, ttl_s: float | None
    ) -> tuple[str, TokenInfo]:
        """A new token (returned once, in clear) and its record."""
        secret = new_secret()
        now = time.time()
        with self.store.session() as s:
            t = Token(
                user_id=user_id,
                kind=kind,
                name=name,
                token_hash=token_hash(secret),
                created_at=now,
                expires_at=None if ttl_s is None else now + ttl_s,
            )
            s.add(t)
            s.flush()
            user = s.get(User, user_id)
            if user is None:
                raise NotFound(f"no user with id {user_id}")
            return secret, TokenInfo(t.id, user.username, kind, name, now, t.expires_at)

    def authenticate(self, secret: str) -> Principal | None:
        """The holder of a token, or None if it is unknown, expired or its user disabled."""
        if not secret or len(secret) > 200:
            return None
        with self.store.session() as s:
            row = s.execute(
                select(Token, User).join(User).where(Token.token_hash == token_hash(secret))
            ).first()
            if row is None:
                return None
            tok, user = row
            if tok.expires_at is not None and tok.expires_at < time.time():
                return None
            if user.disabled:
                return None
            role: Role = "admin" if user.role == "admin" else "viewer"
            return Principal(user.id, user.username, role, tok.kind)

    def revoke(self, secret: str) -> None:
        with self.store.session() as s:
            s.execute(delete(Token).where(Token.token_hash == token_hash(secret)))

    def list_tokens(self, kind: str = "api") -> list[TokenInfo]:
        with self.store.session() as s:
            rows = s.execute(
                select(Token, User.username).join(User).where(Token.kind == kind).order_by(Token.id)
            ).all()
            return [
                TokenInfo(t.id, name, t.kind, t.name, t.created_at, t.expires_at)
                for t, name in rows
            ]

    def delete_token(self, token_id: int) -> None:
        with self.store.session() as s:
            if not rowcount(s.execute(delete(Token).where(Token.id == token_id))):
                raise NotFound(f"no token {token_id}")

    def bootstrap_admin(self, username: str, password: str | None) -> str | None:
        """Create the first admin when there is no account at all.

        Returns the generated password when none was configured (the caller prints it
        once), else None. Nothing happens once any account exists.
        """
        if self.count_users():
            return None
        generated = None
        if password is None:
            generated = password = secrets.token_urlsafe(15)
        try:
            self.create_user(username, password, "admin")
        except Conflict:  # another server created it first
            return None
        log.info("created the first admin account %r", username)
        return generated
