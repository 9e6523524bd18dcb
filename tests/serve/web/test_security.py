"""The probes of a security review, replayed against the real server (uvicorn on loopback,
a real SQLite store, the real face models): each fails if its weakness comes back.

Several client addresses are real: Linux routes all of 127.0.0.0/8 to the loopback
interface, so a client bound to 127.0.0.2 is another address to the server. Races are
real too: threads wait on a barrier and send at once.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

import sauron.serve.web.enrollment as enrollment_module
import sauron.store.accounts as accounts_module
from sauron.serve.web.auth import RECHECK_S
from sauron.store import StoreError
from sauron.store.db import Store

from .conftest import ADMIN_PASSWORD, Feed, LiveApp

T = TypeVar("T")
VERA_PW = "juniper-lantern-" + uuid.uuid4().hex[:8]
MAX_ID = 2**63 - 1


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sec.db'}"


@pytest.fixture
def app(start_app: Callable[..., LiveApp], sqlite_url: str) -> LiveApp:
    return start_app(sqlite_url)


def _client(app: LiveApp, address: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    return httpx.Client(
        base_url=app.url, timeout=120, transport=httpx.HTTPTransport(local_address=address)
    )


Address = str | Callable[[int], str]


def _at_once(
    app: LiveApp, n: int, send: Callable[[int, httpx.Client], T], address: Address = "127.0.0.1"
) -> list[T]:
    """``send(i, client)`` for i in range(n) from n threads released together; the
    client of thread i connects from ``address`` (or ``address(i)``)."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        with _client(app, address(i) if callable(address) else address) as c:
            barrier.wait(30)
            out[i] = send(i, c)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r is not None for r in out), "every request got an answer"
    return out


def _login(c: httpx.Client, user: str, password: str) -> httpx.Response:
    return c.post("/api/login", json={"username": user, "password": password})


def _add_user(app: LiveApp, name: str, password: str = VERA_PW) -> None:
    r = app.client.post(
        "/api/users", headers=app.admin, json={"username": name, "password": password}
    )
    assert r.status_code == 201, r.text


def _audit(app: LiveApp, action: str, admin: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows = app.client.get("/api/audit?limit=1000", headers=admin or app.admin).json()
    return [r for r in rows if r["action"] == action]


def test_parallel_guesses_cannot_race_past_the_lock(app: LiveApp) -> None:
    """Probe 1: 30 log-ins for one user at once got 29 x 401 + 1 x 200."""
    _add_user(app, "vera")
    _add_user(app, "walt")

    codes = _at_once(app, 30, lambda i, c: _login(c, "vera", f"wrong-guess-{i}").status_code)
    assert sorted(set(codes)) == [401, 429], codes
    assert codes.count(401) == 5, "exactly the limit was checked, however many came at once"

    # the issue's probe: 29 wrong and the right one, at once
    guesses = [f"wrong-guess-{i}" for i in range(29)] + [VERA_PW]
    codes = _at_once(app, 30, lambda i, c: _login(c, "walt", guesses[i]).status_code)
    assert codes[:29].count(401) <= 5, codes
    assert codes[:29].count(429) >= 24, codes

    # the lock is this address's: vera from another machine still logs in
    assert _login(app.client, "vera", VERA_PW).status_code == 429
    with _client(app, "127.0.0.2") as other:
        assert _login(other, "vera", VERA_PW).status_code == 200


class _CountingHasher:
    """Argon2's hasher, counting how many hashes run at the same moment."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.active = self.peak = self.calls = 0
        self.lock = threading.Lock()

    def _count(self, fn: Callable[..., T], *args: Any) -> T:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            return fn(*args)
        finally:
            with self.lock:
                self.active -= 1

    def verify(self, stored: str, password: str) -> bool:
        return self._count(self.inner.verify, stored, password)

    def hash(self, password: str) -> str:
        return self._count(self.inner.hash, password)

    def check_needs_rehash(self, stored: str) -> bool:
        return bool(self.inner.check_needs_rehash(stored))


def test_login_flood_is_limited_per_address_hashed_a_few_at_a_time_and_audited_in_bulk(
    app: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 2: 80 failed log-ins with made-up names, 40 at a time, took 2.3 GB and an
    audit row each."""
    admin = app.admin  # logged in before 127.0.0.1 floods itself out
    before = len(_audit(app, "login_failed", admin))
    hasher = _CountingHasher(accounts_module._hasher)
    monkeypatch.setattr(accounts_module, "_hasher", hasher)
    slots = app.services.settings.web.password_hash_slots
    ctx = app.services.ctx

    def made_up(i: int, c: httpx.Client) -> int:
        return _login(c, f"nobody{uuid.uuid4().hex[:8]}", "not-a-password").status_code

    one_address = _at_once(app, 40, made_up) + _at_once(app, 40, made_up)
    assert set(one_address) <= {401, 429, 503}, one_address
    assert one_address.count(401) <= 20, "one address: at most 20 failures checked"
    with _client(app, "127.0.0.4") as c:  # one at a time: exactly the limit
        codes = [made_up(i, c) for i in range(21)]
        assert codes == [401] * 20 + [429], codes

    # the same from 40 addresses at once: every one is checked or told to come back later
    many = _at_once(app, 40, made_up, address=lambda i: f"127.0.1.{i + 1}")
    assert set(many) <= {401, 503}, many
    assert many.count(401) >= slots
    assert hasher.peak <= slots, f"{hasher.peak} password hashes ran at once"
    failures = one_address.count(401) + many.count(401) + 20
    assert hasher.calls == failures, "made-up names are hashed like real ones, once each"

    assert before == 0
    assert len(_audit(app, "login_failed", admin)) <= ctx.failures.immediate, (
        "a flood does not write a row per failure"
    )
    ctx.failures.flush(force=True)
    rows = _audit(app, "login_failed", admin)
    assert len(rows) <= ctx.failures.immediate + ctx.failures.max_keys + 1
    assert sum(json.loads(r["detail"])["count"] for r in rows) == failures, (
        "every failure is counted in the audit log"
    )
    # the flooding address is locked out, even for the right password; elsewhere it is not
    with _client(app, "127.0.0.4") as c:
        assert _login(c, "admin", ADMIN_PASSWORD).status_code == 429
    with _client(app, "127.0.0.3") as elsewhere:
        assert _login(elsewhere, "admin", ADMIN_PASSWORD).status_code == 200


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def test_photo_size_is_read_from_the_header_and_decodes_are_bounded(
    app: LiveApp, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe 3: a 47 kB PNG of 7000x7000 took 470 MB per request; six at once 3.9 GB."""
    viewer = app.add_viewer()
    decoded: list[int] = []
    active = [0, 0]  # now, peak
    lock = threading.Lock()
    real_load = enrollment_module.load_photo

    def counting_load(data: bytes, source: str = "photo", **kw: Any) -> Any:
        with lock:
            decoded.append(len(data))
            active[0] += 1
            active[1] = max(active)
        try:
            time.sleep(0.2)  # hold the slot, so that requests sent together overlap
            return real_load(data, source, **kw)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(enrollment_module, "load_photo", counting_load)
    big = _png(7000, 7000)
    assert len(big) < 100_000

    def search(data: bytes) -> Callable[[int, httpx.Client], httpx.Response]:
        return lambda i, c: c.post(
            "/api/search", headers=viewer, files={"photo": (f"q{i}.png", data)}
        )

    for r in _at_once(app, 6, search(big)):
        assert r.status_code == 422, r.text
        assert "7000x7000 pixels, 49.0 megapixels; the limit is 16 megapixels" in r.text
    assert decoded == [], "refused from the header: not one pixel decoded"

    face = photos["obama.jpg"].read_bytes()
    results = _at_once(app, 8, search(face))
    assert {r.status_code for r in results} <= {200, 503}, [r.text for r in results]
    assert any(r.status_code == 200 for r in results)
    slots = app.services.settings.web.photo_decode_slots
    assert 1 <= active[1] <= slots, f"{active[1]} photos decoded at once"

    # not an image: the reason, not a Python object's repr
    r = app.client.post(
        "/api/search", headers=viewer, files={"photo": ("x.jpg", b"this is not an image")}
    )
    assert r.status_code == 422 and "not a usable image" in r.text
    assert "BytesIO" not in r.text and "object at 0x" not in r.text

    # a body over the limit sent in chunks (no Content-Length) is 413, not 400
    limit = int(app.services.settings.web.max_upload_mb * 1024 * 1024)
    head = (
        b'--b\r\nContent-Disposition: form-data; name="photo"; filename="q.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    chunks = iter([head, *(b"x" * 65536 for _ in range(limit // 65536 + 2))])
    r = app.client.post(
        "/api/search",
        headers={**viewer, "Content-Type": "multipart/form-data; boundary=b"},
        content=chunks,
    )
    assert r.status_code == 413, r.text


def test_megapixel_limit_is_a_setting(
    start_app: Callable[..., LiveApp], sqlite_url: str, photos: dict[str, Path]
) -> None:
    app = start_app(sqlite_url, web={"max_photo_megapixels": 0.05})
    r = app.client.post(
        "/api/search",
        headers=app.admin,
        files={"photo": ("o.jpg", photos["obama.jpg"].read_bytes())},
    )
    assert r.status_code == 422 and "the limit is 0.05 megapixels" in r.text


def test_logout_with_a_bearer_token_revokes_it(app: LiveApp) -> None:
    """Probe 4: log-out with Bearer T answered 204, then T still worked."""
    token = {
        "Authorization": f"Bearer {_login(app.client, 'admin', ADMIN_PASSWORD).json()['token']}"
    }
    assert app.client.get("/api/me", headers=token).status_code == 200
    assert app.client.post("/api/logout", headers=token).status_code == 204
    assert app.client.get("/api/me", headers=token).status_code == 401


@pytest.mark.parametrize("how", ["logout", "disable"])
def test_open_streams_end_once_their_token_stops_working(
    start_app: Callable[..., LiveApp], sqlite_url: str, feed: Callable[[LiveApp], Feed], how: str
) -> None:
    """Probe 11: a live view and an event stream opened before log-out (or before an
    admin disabled the account) kept sending video and alerts for as long as they
    stayed open; they end within a few seconds now."""
    app = start_app(sqlite_url)
    viewer = app.add_viewer("watcher")
    run = feed(app)
    run("lobby", "obama2.jpg", 0, time.time())  # the camera exists before the view opens
    ended: dict[str, float] = {}
    received: dict[str, int] = {}

    def read(path: str) -> None:
        with (
            httpx.Client(base_url=app.url, timeout=30) as c,
            c.stream("GET", path, headers=viewer) as r,
        ):
            assert r.status_code == 200, path
            for chunk in r.iter_bytes():
                received[path] = received.get(path, 0) + len(chunk)
        ended[path] = time.monotonic()

    paths = ("/api/cameras/lobby/stream.mjpeg", "/api/events")
    readers = [threading.Thread(target=read, args=(p,), daemon=True) for p in paths]
    for t in readers:
        t.start()
    revoked = None
    deadline = time.monotonic() + 25
    number = 1
    while len(ended) < len(paths) and time.monotonic() < deadline:
        run("lobby", "obama2.jpg", number, time.time())  # frames keep coming
        number += 1
        time.sleep(0.2)
        if revoked is None and all(received.get(p) for p in paths):
            if how == "logout":
                assert app.client.post("/api/logout", headers=viewer).status_code == 204
            else:
                r = app.client.patch(
                    "/api/users/watcher", headers=app.admin, json={"disabled": True}
                )
                assert r.status_code == 200, r.text
            revoked = time.monotonic()
    for t in readers:
        t.join(5)
    assert revoked is not None, f"the streams never started: {received}"
    assert set(ended) == set(paths), f"still open 25 s on: {set(paths) - set(ended)}"
    for path in paths:
        assert ended[path] - revoked < RECHECK_S + 3, path


def test_tokens_expire_and_name_their_owner(app: LiveApp) -> None:
    """Probe 6: a never-expiring token for another user, audited by its name only."""
    _add_user(app, "vera")
    admin = app.admin
    for days in (None, 366, 100_000):
        r = app.client.post(
            "/api/tokens", headers=admin, json={"name": "forvera", "username": "vera", "days": days}
        )
        assert r.status_code == 422, (days, r.text)
    for name in ("evil\u202etxt.exe", "nul\x00", "bell\x07"):  # shown in lists and the audit
        r = app.client.post("/api/tokens", headers=admin, json={"name": name, "days": 30})
        assert r.status_code == 422 and "control or formatting" in r.text, (name, r.text)
    r = app.client.post(
        "/api/tokens", headers=admin, json={"name": "forvera", "username": "vera", "days": 30}
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["username"] == "vera" and made["expires_at"] is not None
    row = _audit(app, "create_token")[0]
    assert row["username"] == "admin" and row["target"] == "forvera"
    assert json.loads(row["detail"])["owner"] == "vera"
    assert app.client.delete(f"/api/tokens/{made['id']}", headers=admin).status_code == 204
    assert json.loads(_audit(app, "delete_token")[0]["detail"])["owner"] == "vera"

    # a token stored without an expiry (before there was a maximum) ends at the maximum
    accounts = app.services.ctx.accounts
    max_s = accounts.max_token_s
    assert max_s is not None
    accounts.max_token_s = None
    old, _ = accounts.issue_token(accounts.user_id("vera"), kind="api", name="old", ttl_s=None)
    accounts.max_token_s = max_s
    headers = {"Authorization": f"Bearer {old}"}
    assert app.client.get("/api/me", headers=headers).status_code == 200
    accounts.max_token_s = 1.0
    time.sleep(1.5)
    try:
        assert app.client.get("/api/me", headers=headers).status_code == 401
    finally:
        accounts.max_token_s = max_s


def test_store_and_its_folder_are_readable_by_the_owner_only(
    start_app: Callable[..., LiveApp], tmp_path: Path
) -> None:
    """Probe 5: sauron.db was mode 644 in a 755 folder."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "sauron.db").touch(mode=0o644)
    (data / "sauron.db").chmod(0o644)
    app = start_app(None)  # the default store: SQLite in store.data_dir
    assert app.client.get("/api/me", headers=app.admin).status_code == 200
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for f in data.glob("sauron.db*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    fresh = tmp_path / "fresh.db"
    old = os.umask(0o022)
    try:
        Store(f"sqlite:///{fresh}").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600, "created so, not tightened later"

    with pytest.raises(StoreError, match=r"the folder .*missing does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing' / 's.db'}")


def test_a_stranger_cannot_lock_the_admin_out(
    start_app: Callable[..., LiveApp], sqlite_url: str
) -> None:
    """Probe 7: five wrong passwords from anywhere locked the admin out for 5 minutes."""
    app = start_app(sqlite_url, web={"login_fails_per_user_total": 12})
    admin = app.admin  # 127.0.0.1: an address the admin logs in from
    _add_user(app, "vera")
    for n in range(3):  # a stranger on three machines, five guesses on each
        with _client(app, f"127.0.2.{n + 1}") as stranger:
            codes = [_login(stranger, "admin", f"guess-{i}").status_code for i in range(6)]
            assert codes[:5].count(401) + codes[:5].count(429) == 5 and codes[5] == 429
    assert _login(app.client, "admin", ADMIN_PASSWORD).status_code == 200, (
        "the admin's own machine is not locked out"
    )
    with _client(app, "127.0.2.9") as new_machine:
        r = _login(new_machine, "admin", ADMIN_PASSWORD)
        assert r.status_code == 429 and "ask an admin to unlock" in r.json()["detail"]
        locks = app.client.get("/api/lockouts", headers=admin).json()
        assert {(x["kind"], x["username"]) for x in locks} >= {("user", "admin"), ("pair", "admin")}
        viewer = app.add_viewer()
        assert app.client.post("/api/users/admin/unlock", headers=viewer).status_code == 403
        r = app.client.post("/api/users/admin/unlock", headers=admin)
        assert r.status_code == 200 and r.json()["cleared"] >= 4
        assert _login(new_machine, "admin", ADMIN_PASSWORD).status_code == 200
    assert ("unlock", "admin") in {(a["action"], a["target"]) for a in _audit(app, "unlock")}

    # wrong current passwords from a stolen session lock that session's address only
    with _client(app, "127.0.2.20") as thief:
        stolen = {"Authorization": f"Bearer {_login(thief, 'vera', VERA_PW).json()['token']}"}
        body = {"current_password": "not-it-at-all", "new_password": "quartz-pelican-harbor"}
        codes = [
            thief.post("/api/users/vera/password", headers=stolen, json=body).status_code
            for _ in range(6)
        ]
        assert codes == [403] * 5 + [429], codes
    assert _login(app.client, "vera", VERA_PW).status_code == 200


def test_huge_ids_are_refused_at_the_edge(start_app: Callable[..., LiveApp], db_url: str) -> None:
    """Probe 8: ids past 64 bits gave 500 OverflowError and a traceback."""
    app = start_app(db_url)
    admin = app.admin
    for huge in ("99999999999999999999999", str(MAX_ID + 1), "-99999999999999999999999"):
        for path in (
            f"/api/sightings?before={huge}",
            f"/api/alerts?before={huge}",
            f"/api/audit?before={huge}",
            f"/api/photos/{huge}",
            f"/api/sightings/{huge}/snapshot.jpg",
            f"/api/alerts/{huge}/snapshot.jpg",
        ):
            r = app.client.get(path, headers=admin)
            assert r.status_code == 422, (path, r.status_code)
        r = app.client.delete(f"/api/tokens/{huge}", headers=admin)
        assert r.status_code == 422
    assert app.client.get(f"/api/photos/{MAX_ID}", headers=admin).status_code == 404

    # every integer a route takes is bounded to what the database holds
    spec = app.client.get("/api/openapi.json").json()
    for path, ops in spec["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                schema = param["schema"]
                types = [schema, *schema.get("anyOf", [])]
                for t in types:
                    if t.get("type") == "integer":
                        assert t.get("maximum", 2**64) <= MAX_ID, (path, param["name"])


def test_api_docs_come_from_the_app_within_its_csp(app: LiveApp) -> None:
    """Probe 9: /api/docs loaded Swagger UI from a CDN with an inline script."""
    page = app.client.get("/api/docs")
    assert page.status_code == 200
    assert "<script>" not in page.text and "http" not in page.text, "no inline script, no CDN"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/api/docs/assets/swagger-ui-bundle.js", "/api/docs/assets/swagger-ui.css"):
        assert asset in page.text
        r = app.client.get(asset)
        assert r.status_code == 200 and len(r.content) > 10_000, asset
    assert app.client.get("/static/docs.js").status_code == 200
    _docs_render_in_a_browser(app.url)


CHROMIUM = Path(os.environ.get("SAURON_TEST_CHROMIUM", "/usr/bin/chromium"))


def _docs_render_in_a_browser(url: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"served as it should be; no Chromium at {CHROMIUM} to render it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/api/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "Sauron" in page.inner_text(".swagger-ui .info .title")
            assert page.locator(".opblock").count() > 10, "the operations are listed"
            assert not [e for e in errors if "Content Security Policy" in e], errors
        finally:
            browser.close()


def test_password_policy(app: LiveApp) -> None:
    """Probe 10: ten spaces, aaaaaaaaaa, 1234567890, the user name and the current
    password were accepted; a short one was echoed back in the 422."""
    admin = app.admin
    weak = {
        " " * 10: "too easy to guess",
        "aaaaaaaaaa": "too easy to guess",
        "1234567890": "too easy to guess",
        "password123": "too easy to guess",
        "qwertyuiop": "too easy to guess",
        "xavier-the-great": "must not contain the user name",
        "Zq9!x": "at least 10 characters",
    }
    for pw, reason in weak.items():
        r = app.client.post(
            "/api/users", headers=admin, json={"username": "xavier", "password": pw}
        )
        assert r.status_code == 422 and reason in r.text, (pw, r.text)
        assert pw.strip() not in r.text if pw.strip() else True, "never echoed"
    long_pw = "y" * 2000
    r = app.client.post("/api/users", headers=admin, json={"username": "x2", "password": long_pw})
    assert r.status_code == 422 and "yyyyyyyy" not in r.text, "never echoed, even by pydantic"

    _add_user(app, "vera")
    vera = {"Authorization": f"Bearer {_login(app.client, 'vera', VERA_PW).json()['token']}"}
    url = "/api/users/vera/password"
    r = app.client.post(
        url, headers=vera, json={"current_password": VERA_PW, "new_password": VERA_PW}
    )
    assert r.status_code == 422 and "the new password is the current one" in r.text
    r = app.client.post(url, headers=admin, json={"new_password": VERA_PW})
    assert r.status_code == 422 and "current one" in r.text, "an admin's reset too"
    r = app.client.post(
        url, headers=vera, json={"current_password": VERA_PW, "new_password": "1234567890"}
    )
    assert r.status_code == 422 and "1234567890" not in r.text


def test_face_images_are_not_cached_and_unknown_cameras_are_404(
    start_app: Callable[..., LiveApp], sqlite_url: str, photos: dict[str, Path]
) -> None:
    """Probe 12: snapshots cached a day after log-out; a stream of no camera answered 200."""
    app = start_app(sqlite_url, cameras=[{"name": "lobby", "source": "0"}])
    admin = app.admin
    r = app.client.post(
        "/api/people",
        headers=admin,
        data={"name": "obama"},
        files=[("photos", ("o.jpg", photos["obama.jpg"].read_bytes(), "image/jpeg"))],
    )
    assert r.status_code == 201, r.text
    photo = app.client.get(r.json()["photos"][0]["url"], headers=admin)
    assert photo.status_code == 200 and photo.headers["cache-control"] == "no-store"
    r = app.client.get("/api/cameras/nope/stream.mjpeg", headers=admin)
    assert r.status_code == 404


@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_for_counts_only_from_a_trusted_proxy(
    start_app: Callable[..., LiveApp], sqlite_url: str, trusted: bool
) -> None:
    """A client cannot dodge the limits by naming itself in X-Forwarded-For, unless the
    request comes from a proxy listed in web.trusted_proxies."""
    proxies = ["127.0.0.1"] if trusted else []
    app = start_app(sqlite_url, web={"trusted_proxies": proxies})
    _add_user(app, "vera")
    for i in range(5):
        r = app.client.post(
            "/api/login",
            json={"username": "vera", "password": f"wrong-guess-{i}"},
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
        assert r.status_code == 401
    r = app.client.post(
        "/api/login",
        json={"username": "vera", "password": VERA_PW},
        headers={"X-Forwarded-For": "198.51.100.2"},
    )
    assert r.status_code == (200 if trusted else 429), r.text


def test_an_anonymous_upload_is_refused_before_its_body_is_read(app: LiveApp) -> None:
    """Probe 12: an upload route read (and parsed) the whole body of a client with no
    credentials before answering 401, so anyone could make the server take in 25 MB a
    request, or hold a connection open by trickling bytes."""
    host, port = app.url.removeprefix("http://").split(":")
    head = (
        "POST /api/search HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=zz\r\n"
        "Content-Length: 20000000\r\n\r\n--zz\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())  # and nothing more of the 20 MB
        answer = sock.recv(4096).decode("latin-1")  # times out (fails) if it waits
    assert answer.startswith("HTTP/1.1 401"), answer[:200]
    # with credentials the request still goes on to the route (a bad token: 401 there)
    r = app.client.post("/api/people", headers={"Authorization": "Bearer nope"}, data={})
    assert r.status_code == 401
    assert app.client.post("/api/login", json={"username": "a", "password": "b"}).status_code == 401


def test_api_answers_are_not_cached_and_refusals_are_not_500(app: LiveApp) -> None:
    """Probe 13: JSON answers with people's notes, sightings and the audit log had no
    Cache-Control; editing a person who does not exist answered 500."""
    admin = app.admin
    for path in ("/api/people", "/api/sightings", "/api/alerts", "/api/audit", "/api/users"):
        r = app.client.get(path, headers=admin)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store", path
    r = app.client.patch("/api/people/nobody", headers=admin, json={"notes": "x"})
    assert r.status_code == 404, r.text


def test_a_user_name_sent_to_a_failed_log_in_is_audited_without_control_characters(
    app: LiveApp,
) -> None:
    """Probe 14: a failed log-in's user name went to the audit log as sent, so a line
    break in it could forge a line of an exported log."""
    assert _login(app.client, "x\nINFO forged\u202e", "wrong").status_code == 401
    (row,) = [r for r in _audit(app, "login_failed") if r["username"].startswith("x")]
    assert row["username"] == "x\\u000aINFO forged\\u202e"
