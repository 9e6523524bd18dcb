"""Accounts: users with a role, passwords hashed with Argon2id, and bearer tokens.

A token is 32 random bytes (URL-safe text); only its SHA-256 is stored, so a copy of the
database cannot be used to log in. Log-in sessions and API tokens are both tokens, told
apart by ``kind``; every token expires (at the latest ``max_token_s`` after it was made).

Argon2id is slow and takes 19 MiB per hash on purpose, so at most ``hash_slots`` hashes
run at once in a process: a flood of log-ins queues instead of taking all memory and
cores. A new password must pass :func:`check_password_policy`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from zxcvbn import zxcvbn

from sauron import SauronError
from sauron.store import Conflict, NotFound
from sauron.store.db import Store, rowcount
from sauron.store.models import Token, User

log = logging.getLogger(__name__)

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
# OWASP's Argon2id setting (19 MiB, 2 passes, 1 lane): one hash uses one core, so
# ``hash_slots`` bounds both the memory and the cores a flood of log-ins can take. Hashes
# made with other settings still verify, and are redone at the next log-in.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this keeps a log-in for an unknown user as slow as for a known one.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD = 10
#: zxcvbn's score (0-4) a new password needs: 3 = about 10^8 to 10^10 guesses, beyond an
#: online attack and costly offline against Argon2id
MIN_PASSWORD_SCORE = 3


class PasswordRejected(SauronError, ValueError):
    """A new password fails the policy; the message says why (never the password)."""


def check_password_policy(password: str, username: str) -> None:
    """Refuse a password that is short, common, a pattern (repeats, sequences, keyboard
    rows, dates), or holds the user name; the reason is in the error."""
    if len(password) < MIN_PASSWORD:
        raise PasswordRejected(f"a password needs at least {MIN_PASSWORD} characters")
    if len(username) >= 3 and username.casefold() in password.casefold():
        raise PasswordRejected("the password must not contain the user name")
    verdict = zxcvbn(password[:100], user_inputs=[username, "sauron"])
    if verdict["score"] < MIN_PASSWORD_SCORE:
        hint = verdict["feedback"]["warning"] or "it is too easy to guess"
        raise PasswordRejected(
            f"the password is too easy to guess: {hint.rstrip('.')}; use a longer "
            "passphrase of unrelated words"
        )


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
    def __init__(
        self, store: Store, *, hash_slots: int = 1, max_token_s: float | None = None
    ) -> None:
        self.store = store
        self.max_token_s = max_token_s
        self._hash_slots = threading.BoundedSemaphore(hash_slots)

    def _hash(self, password: str) -> str:
        with self._hash_slots:  # slow on purpose: never inside a transaction
            return _hasher.hash(password)

    def _verify(self, stored: str, password: str) -> bool:
        with self._hash_slots:
            try:
                return _hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return False

    def count_users(self) -> int:
        with self.store.session() as s:
            return len(s.scalars(select(User.id)).all())

    def create_user(self, username: str, password: str, role: Role) -> UserInfo:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, but got {role!r}")
        check_password_policy(password, username)
        password_hash = self._hash(password)
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

    def update_user(
        self, username: str, *, role: Role | None = None, disabled: bool | None = None
    ) -> UserInfo:
        """Change a user's role and/or disable (or enable) them; a disabled user's tokens
        stop working at once (authentication refuses them) and come back if enabled."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, but got {role!r}")
        with self.store.session() as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise NotFound(f"no user {username!r}")
            if role is not None:
                u.role = role
            if disabled is not None:
                u.disabled = disabled
            s.flush()
            return _user_info(u)

    def delete_user(self, username: str) -> None:
        with self.store.session() as s:
            if not rowcount(s.execute(delete(User).where(User.username == username))):
                raise NotFound(f"no user {username!r}")

    def check_password(self, username: str, password: str) -> UserInfo | None:
        with self.store.session() as s:
            u = s.scalar(select(User).where(User.username == username))
            info = None if u is None else _user_info(u)
            stored = _DUMMY_HASH if u is None else u.password_hash
        if not self._verify(stored, password) or info is None or info.disabled:
            return None
        if _hasher.check_needs_rehash(stored):
            new_hash = self._hash(password)
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

        The new password must pass the policy and differ from the current one. The new
        hash and the revocation are one transaction. Returns how many tokens were revoked.
        """
        with self.store.session() as s:
            current = s.scalar(select(User.password_hash).where(User.username == username))
        if current is None:
            raise NotFound(f"no user {username!r}")
        check_password_policy(password, username)
        if self._verify(current, password):
            raise PasswordRejected("the new password is the current one")
        password_hash = self._hash(password)
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
        """A new token (returned once, in clear) and its record. Its life is cut to
        ``max_token_s`` (None = never expires only when there is no maximum)."""
        if self.max_token_s is not None and (ttl_s is None or ttl_s > self.max_token_s):
            ttl_s = self.max_token_s
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
            if self._expired(tok.created_at, tok.expires_at):
                return None
            if user.disabled:
                return None
            role: Role = "admin" if user.role == "admin" else "viewer"
            return Principal(user.id, user.username, role, tok.kind)

    def _expired(self, created_at: float, expires_at: float | None) -> bool:
        """Past its expiry, or (tokens made before there was a maximum) past the maximum."""
        now = time.time()
        if expires_at is not None and expires_at < now:
            return True
        return self.max_token_s is not None and created_at + self.max_token_s < now

    def user_id(self, username: str) -> int:
        with self.store.session() as s:
            uid = s.scalar(select(User.id).where(User.username == username))
        if uid is None:
            raise NotFound(f"no user {username!r}")
        return uid

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

    def delete_token(self, token_id: int) -> str:
        """Delete a token; the user name of its owner."""
        with self.store.session() as s:
            owner = s.scalar(select(User.username).join(Token).where(Token.id == token_id))
            if owner is None or not rowcount(s.execute(delete(Token).where(Token.id == token_id))):
                raise NotFound(f"no token {token_id}")
            return owner

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
        except PasswordRejected as exc:
            raise PasswordRejected(f"web.admin_password is refused: {exc}") from None
        log.info("created the first admin account %r", username)
        return generated
