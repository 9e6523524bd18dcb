"""The REST API against the running app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
from PIL import Image

from sauron.imaging import decode_jpeg, encode_jpeg
from sauron.store.db import NewSighting

from .conftest import Feed, LiveApp, read_alerts


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("photos", (name, data, "image/jpeg")) for name, data in items]


def _enroll(
    app: LiveApp, name: str, *photos: tuple[str, bytes], headers: dict[str, str] | None = None
) -> httpx.Response:
    return app.client.post(
        "/api/people", headers=headers or app.admin, data={"name": name}, files=_files(*photos)
    )


def test_every_route_but_login_needs_a_valid_token(app: LiveApp) -> None:
    for method, path in [
        ("GET", "/api/people"),
        ("GET", "/api/sightings"),
        ("GET", "/api/alerts"),
        ("POST", "/api/search"),
        ("GET", "/api/cameras"),
        ("GET", "/api/audit"),
        ("DELETE", "/api/people/x"),
        ("GET", "/api/events"),
        ("POST", "/api/users/admin/password"),
    ]:
        r = app.client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        r = app.client.request(method, path, headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401, (method, path)
    assert (
        app.client.post("/api/login", json={"username": "admin", "password": "nope"}).status_code
        == 401
    )
    assert app.client.get("/api/health").json()["ok"] is True

    # an API token that expires (0.00002 days = 1.7 s)
    r = app.client.post("/api/tokens", headers=app.admin, json={"name": "ci", "days": 0.00002})
    assert r.status_code == 201
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    assert app.client.get("/api/people", headers=token).status_code == 200
    time.sleep(2.0)
    r = app.client.get("/api/people", headers=token)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_viewer_watches_and_searches_but_cannot_change_the_watchlist(
    app: LiveApp, photos: dict[str, Path]
) -> None:
    assert _enroll(app, "obama", ("o.jpg", photos["obama.jpg"].read_bytes())).status_code == 201
    viewer = app.add_viewer()
    assert [p["name"] for p in app.client.get("/api/people", headers=viewer).json()] == ["obama"]
    assert app.client.get("/api/cameras", headers=viewer).status_code == 200
    assert app.client.get("/api/sightings", headers=viewer).status_code == 200
    r = app.client.post(
        "/api/search", headers=viewer, files={"photo": ("q.jpg", photos["obama2.jpg"].read_bytes())}
    )
    assert r.status_code == 200
    assert (
        _enroll(
            app, "biden", ("b.jpg", photos["biden.jpg"].read_bytes()), headers=viewer
        ).status_code
        == 403
    )
    assert app.client.delete("/api/people/obama", headers=viewer).status_code == 403
    assert (
        app.client.patch("/api/people/obama", headers=viewer, json={"name": "x"}).status_code == 403
    )
    assert app.client.get("/api/audit", headers=viewer).status_code == 403
    assert (
        app.client.post(
            "/api/users",
            headers=viewer,
            json={"username": "evil", "password": "0123456789ab", "role": "admin"},
        ).status_code
        == 403
    )


def test_cookie_session_writes_need_the_csrf_header(app: LiveApp, photos: dict[str, Path]) -> None:
    app.login("admin", app.services.settings.web.admin_password.get_secret_value())  # type: ignore[union-attr]
    assert "sauron_session" in app.client.cookies
    files = _files(("o.jpg", photos["obama.jpg"].read_bytes()))
    r = app.client.post("/api/people", data={"name": "obama"}, files=files)
    assert r.status_code == 403 and "x-requested-with" in r.json()["detail"]
    r = app.client.post(
        "/api/people", data={"name": "obama"}, files=files, headers={"X-Requested-With": "sauron"}
    )
    assert r.status_code == 201
    assert app.client.get("/api/people").status_code == 200


def test_watched_person_alerts_once_per_appearance_and_is_found_by_photo(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    admin = app.admin
    r = _enroll(app, "obama", ("obama.jpg", photos["obama.jpg"].read_bytes()))
    assert r.status_code == 201, r.text
    assert app.watchlist.names == ["obama"], "the running matcher got the enrollment"

    got: list[dict[str, Any]] = []
    ready, stop = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=read_alerts, args=(app.url, admin, got, stop, ready), daemon=True
    )
    listener.start()
    assert ready.wait(10)
    time.sleep(0.3)

    run = feed(app)
    t0 = time.time() - 60
    for i in range(4):  # one appearance on the lobby camera: 4 consecutive frames
        run("lobby", "obama2.jpg", i, t0 + i * 0.1)
    run("lobby", "biden.jpg", 4, t0 + 0.5)  # a stranger: no alert
    run("lobby", "obama3.jpg", 5, t0 + 10)  # back after a 9.6 s gap: a new appearance
    run("gate", "obama2.jpg", 0, t0 + 10.05)  # another camera: its own appearance
    assert app.record.flush(30)
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()

    alerts = app.client.get("/api/alerts", headers=admin).json()
    assert sorted((a["camera"], a["person"]) for a in alerts) == [
        ("gate", "obama"),
        ("lobby", "obama"),
        ("lobby", "obama"),
    ]
    first = min(alerts, key=lambda a: a["ts"])
    assert first["frames"] == 4 and first["distance"] < 0.6
    assert sorted(a["id"] for a in got) == sorted(a["id"] for a in alerts), "pushed live"
    assert all(e["snapshot_url"] and e["camera"] and e["ts"] for e in got)
    snap = app.client.get(first["snapshot_url"], headers=admin)
    assert snap.headers["content-type"] == "image/jpeg"
    assert decode_jpeg(snap.content).shape[0] > 20

    # history: filtered by person, camera and time, paginated, with snapshots
    hist = app.client.get(
        "/api/sightings", headers=admin, params={"person": "obama", "camera": "lobby"}
    ).json()
    assert {s["person"] for s in hist["items"]} == {"obama"}
    assert len(hist["items"]) == 2, "one per track-less face each sighting_interval_s"
    page = app.client.get("/api/sightings", headers=admin, params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_before"] is not None
    rest = app.client.get(
        "/api/sightings", headers=admin, params={"limit": 50, "before": page["next_before"]}
    ).json()
    assert len(page["items"]) + len(rest["items"]) == 4  # 2 lobby obama, biden, gate obama
    window = app.client.get(
        "/api/sightings", headers=admin, params={"since": t0 + 5, "until": t0 + 11}
    ).json()
    assert {s["camera"] for s in window["items"]} == {"lobby", "gate"}
    assert all(s["ts"] >= t0 + 5 for s in window["items"])
    assert app.client.get(hist["items"][0]["snapshot_url"], headers=admin).status_code == 200

    # search by photo: obama's sightings, nearest first, and not biden's
    r = app.client.post(
        "/api/search",
        headers=admin,
        files={"photo": ("query.jpg", photos["obama.jpg"].read_bytes())},
    )
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["total"] == 3 and res["searched"] == 4
    dists = [s["query_distance"] for s in res["items"]]
    assert dists == sorted(dists) and dists[-1] <= 0.6
    assert {s["person"] for s in res["items"]} == {"obama"}
    biden = app.client.post(
        "/api/search", headers=admin, files={"photo": ("b.jpg", photos["biden.jpg"].read_bytes())}
    ).json()
    assert [s["person"] for s in biden["items"]] == [None]

    actions = [
        (a["action"], a["target"]) for a in app.client.get("/api/audit", headers=admin).json()
    ]
    assert ("search", "query.jpg") in actions and ("enroll", "obama") in actions


def _two_faces(photos: dict[str, Path]) -> bytes:
    obama = decode_jpeg(photos["obama.jpg"].read_bytes())
    biden = decode_jpeg(photos["biden.jpg"].read_bytes())[:1200]
    h = 500
    parts = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h)) for im in (obama, biden)]
    return encode_jpeg(np.hstack(parts), 90)


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (12000, 6000)).save(buf, "PNG")  # 72 Mpx in ~70 kB
    return buf.getvalue()


def _no_face() -> bytes:
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    return encode_jpeg(np.dstack([ramp, ramp[::-1], ramp]), 90)


def _small_face(photos: dict[str, Path]) -> bytes:
    img = decode_jpeg(photos["obama.jpg"].read_bytes())
    return encode_jpeg(
        cv2.resize(
            img, (100, round(100 * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_AREA
        ),
        95,
    )


def test_hostile_uploads_are_refused_with_the_reason(
    start_app: Callable[..., LiveApp], db_url: str, photos: dict[str, Path]
) -> None:
    app = start_app(db_url, web={"max_photo_mb": 1.0, "max_upload_mb": 3.0})
    cases = {
        "not an image": (b"this is not an image at all", "not a usable image"),
        "too large": (b"\xff\xd8" + bytes(1024 * 1024 + 10), "too large"),
        "bomb": (_bomb(), "12000x6000 pixels, 72.0 megapixels; the limit is 16 megapixels"),
        "no face": (_no_face(), "no face"),
        "several faces": (_two_faces(photos), "2 faces found"),
        "small face": (_small_face(photos), "too small to be useful"),
    }
    for what, (data, reason) in cases.items():
        r = _enroll(app, "mallory", ("up.jpg", data))
        assert r.status_code == 422, (what, r.status_code, r.text)
        refused = r.json()["detail"]["refused"]
        assert reason in refused[0]["reason"], (what, refused)
        s = app.client.post("/api/search", headers=app.admin, files={"photo": ("q.jpg", data)})
        assert s.status_code == 422 and reason in s.text, what
    assert app.client.get("/api/people", headers=app.admin).json() == []

    # one bad photo among good ones refuses the lot, naming the bad one
    r = _enroll(
        app, "mallory", ("good.jpg", photos["obama.jpg"].read_bytes()), ("bad.jpg", _no_face())
    )
    assert r.status_code == 422
    assert [x["file"] for x in r.json()["detail"]["refused"]] == ["bad.jpg"]

    # a request body over web.max_upload_mb is cut off before it is parsed
    r = app.client.post(
        "/api/people",
        headers=app.admin,
        data={"name": "big"},
        files=_files(("a.jpg", bytes(4 * 1024 * 1024))),
    )
    assert r.status_code == 413

    # path traversal: the file name is only ever a label, cleaned of any directory part
    target = Path("/tmp/sauron-traversal-probe.jpg")
    target.unlink(missing_ok=True)
    r = _enroll(
        app,
        "obama",
        ("../../../../../tmp/sauron-traversal-probe.jpg", photos["obama.jpg"].read_bytes()),
    )
    assert r.status_code == 201, r.text
    assert r.json()["photos"][0]["filename"] == "sauron-traversal-probe.jpg"
    assert not target.exists()
    for path in (
        "/static/../pyproject.toml",
        "/static/..%2f..%2fpyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
    ):
        assert app.client.get(path).status_code == 404, path
    bad = app.client.get("/api/cameras/..%2f..%2fetc/latest.jpg", headers=app.admin)
    assert bad.status_code in (404, 422)
    # a name is only ever a label: the id derived from it is plain; an id given is checked
    r = _enroll(app, "../evil", ("o.jpg", photos["obama.jpg"].read_bytes()))
    assert r.status_code == 201 and r.json()["name"] == "evil", r.text
    r = app.client.post(
        "/api/people",
        headers=app.admin,
        data={"name": "Eve", "id": "../eve"},
        files=_files(("o.jpg", photos["obama.jpg"].read_bytes())),
    )
    assert r.status_code == 422 and "person id" in r.text


def test_photos_rename_and_delete_reach_the_running_matcher(
    app: LiveApp, photos: dict[str, Path]
) -> None:
    admin = app.admin
    r = _enroll(
        app,
        "obama",
        ("a.jpg", photos["obama.jpg"].read_bytes()),
        ("b.jpg", photos["obama2.jpg"].read_bytes()),
    )
    assert r.status_code == 201 and len(r.json()["photos"]) == 2
    assert _enroll(app, "obama", ("c.jpg", photos["obama3.jpg"].read_bytes())).status_code == 409
    r = app.client.post(
        "/api/people/obama/photos",
        headers=admin,
        files=_files(("c.jpg", photos["obama3.jpg"].read_bytes())),
    )
    assert r.status_code == 200 and len(r.json()["photos"]) == 3
    photo = app.client.get(r.json()["photos"][0]["url"], headers=admin)
    assert photo.headers["content-type"] == "image/jpeg"
    assert b"Exif" not in photo.content[:200], "stored re-encoded, without metadata"
    assert app.watchlist.names == ["obama"]
    ref = app.services.store.wire_person("obama").embeddings
    names, dist = app.watchlist.match(ref, 0.6)
    assert names == ["obama"] * 3 and float(dist.max()) < 0.01, "all 3 photos reached it"

    r = app.client.patch("/api/people/obama", headers=admin, json={"name": "barack"})
    assert r.status_code == 200
    assert app.watchlist.names == ["barack"]
    pid = r.json()["photos"][0]["id"]
    r = app.client.delete(f"/api/people/barack/photos/{pid}", headers=admin)
    assert r.status_code == 200 and len(r.json()["photos"]) == 2
    assert app.client.delete("/api/people/barack", headers=admin).status_code == 204
    assert app.watchlist.names == [], "the deletion reached the running matcher"
    assert app.client.get(f"/api/photos/{pid + 1}", headers=admin).status_code == 404
    assert app.client.delete("/api/people/barack", headers=admin).status_code == 404
    actions = [a["action"] for a in app.client.get("/api/audit", headers=admin).json()]
    for act in ("enroll", "add_photos", "rename", "delete_photo", "delete_person"):
        assert act in actions


def test_people_are_named_as_written_with_notes_reason_and_last_seen(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    admin = app.admin
    obama = photos["obama.jpg"].read_bytes()
    r = app.client.post(
        "/api/people",
        headers=admin,
        data={"name": "  José   García ", "reason": "trespass warning", "notes": "tall"},
        files=_files(("j.jpg", obama)),
    )
    assert r.status_code == 201, r.text
    jose = r.json()
    assert (jose["name"], jose["display_name"]) == ("jose-garcia", "José García")
    assert (jose["reason"], jose["notes"], jose["last_seen"]) == ("trespass warning", "tall", None)
    assert app.watchlist.names == ["jose-garcia"], "matchers know the id"
    # the same name again is refused; another spelling gets the next id
    assert _enroll(app, "José García", ("j.jpg", obama)).status_code == 409
    r = _enroll(app, "Jose Garcia", ("j.jpg", obama))
    assert r.status_code == 201 and r.json()["name"] == "jose-garcia-2"
    r = _enroll(app, "王小明", ("w.jpg", photos["obama2.jpg"].read_bytes()))
    assert r.status_code == 201 and r.json()["name"].startswith("person-"), r.text
    assert r.json()["display_name"] == "王小明"
    for bad in ("   ", "a\u202eb", "x" * 129, "..."):
        r = _enroll(app, bad, ("j.jpg", obama))
        assert r.status_code == 422 and "display name" in r.text, (bad, r.text)

    # a photo of two people: refused, saying the largest face may be taken; then taken
    two = _two_faces(photos)
    r = _enroll(app, "Barack Obama", ("two.jpg", two))
    assert r.status_code == 422
    assert r.json()["detail"]["refused"][0]["several_faces"] is True
    r = app.client.post(
        "/api/people",
        headers=admin,
        data={"name": "Barack Obama", "largest": "true"},
        files=_files(("two.jpg", two)),
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "barack-obama"

    # details change; the id and the photos stay
    r = app.client.patch(
        "/api/people/jose-garcia",
        headers=admin,
        json={"display_name": "José Luis García", "reason": "barred since May"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["display_name"], r.json()["reason"], r.json()["notes"]) == (
        "José Luis García",
        "barred since May",
        "tall",
    )
    assert app.client.patch("/api/people/jose-garcia", headers=admin, json={}).status_code == 422
    # a refused change changes nothing: a bad id, an id taken, a name another person has
    for body, code in (
        ({"name": "bad name!", "notes": "changed?"}, 422),
        ({"name": "barack-obama", "notes": "changed?"}, 409),
        ({"display_name": "Barack Obama", "notes": "changed?"}, 409),
        ({"notes": "hidden \u202e text"}, 422),
        ({"reason": "nul \x00 byte"}, 422),
    ):
        r = app.client.patch("/api/people/jose-garcia", headers=admin, json=body)
        assert r.status_code == code, (body, r.text)
    one = next(
        p for p in app.client.get("/api/people", headers=admin).json() if p["name"] == "jose-garcia"
    )
    assert (one["notes"], one["display_name"]) == ("tall", "José Luis García")
    viewer_patch = app.client.patch(
        "/api/people/jose-garcia", headers=app.add_viewer(), json={"notes": "x"}
    )
    assert viewer_patch.status_code == 403
    actions = [
        (a["action"], a["target"]) for a in app.client.get("/api/audit", headers=admin).json()
    ]
    assert ("edit_person", "jose-garcia") in actions and ("enroll", "barack-obama") in actions

    # last seen: the newest stored sighting, and where
    run = feed(app)
    now = time.time()
    run("gate", "obama2.jpg", 0, now - 5)
    assert app.record.flush(30)
    people = {p["name"]: p for p in app.client.get("/api/people", headers=admin).json()}
    seen = [p for p in people.values() if p["last_seen"] is not None]
    assert seen and all(p["last_camera"] == "gate" for p in seen)
    assert all(abs(p["last_seen"] - (now - 5)) < 0.01 for p in seen)


def test_alerts_are_acknowledged_filtered_and_paged(app: LiveApp) -> None:
    store = app.services.store
    t0 = time.time() - 100
    made = [
        store.add_alert(person, camera, t0 + i, 0.4, None)
        for i, (person, camera) in enumerate(
            [("obama", "lobby"), ("obama", "gate"), ("biden", "lobby"), ("obama", "lobby")]
        )
    ]
    ids = [a.id for a in made]
    viewer = app.add_viewer()

    def listed(**params: Any) -> list[int]:
        r = app.client.get("/api/alerts", headers=app.admin, params=params)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()]

    assert listed(state="open") == ids[::-1]
    first = app.client.get("/api/alerts", headers=app.admin).json()[-1]
    assert first["confidence"] == 66.7, "distance 0.4 at tolerance 0.6"
    assert listed(person="obama", camera="lobby") == [ids[3], ids[0]]
    assert listed(limit=2) == [ids[3], ids[2]]
    assert listed(limit=2, before=ids[2]) == [ids[1], ids[0]], "the next page"

    r = app.client.post(f"/api/alerts/{ids[1]}/ack", headers=viewer)
    assert r.status_code == 200, r.text
    assert r.json()["acknowledged_by"] == "viewer" and r.json()["acknowledged_at"] > t0
    again = app.client.post(f"/api/alerts/{ids[1]}/ack", headers=app.admin).json()
    assert again["acknowledged_by"] == "viewer", "acknowledging again changes nothing"
    assert listed(state="open") == [ids[3], ids[2], ids[0]]
    assert listed(state="acknowledged") == [ids[1]]

    # all of one camera, up to the newest the operator saw
    r = app.client.post(
        "/api/alerts/ack", headers=app.admin, json={"camera": "lobby", "up_to_id": ids[2]}
    )
    assert r.status_code == 200 and r.json()["acknowledged"] == [ids[0], ids[2]]
    assert listed(state="open") == [ids[3]]
    r = app.client.post("/api/alerts/ack", headers=app.admin, json={})
    assert r.json()["acknowledged"] == [ids[3]] and listed(state="open") == []

    assert app.client.post("/api/alerts/999999/ack", headers=app.admin).status_code == 404
    biggest = 2**63 - 1  # the largest id: looked up, not overflowed
    assert app.client.post(f"/api/alerts/{biggest}/ack", headers=app.admin).status_code == 404
    assert app.client.get("/api/alerts?state=closed", headers=app.admin).status_code == 422
    bad = app.client.post("/api/alerts/ack", headers=app.admin, json={"up_to_id": 0})
    assert bad.status_code == 422
    assert httpx.post(f"{app.url}/api/alerts/ack", json={}).status_code == 401
    audit = app.client.get("/api/audit", headers=app.admin).json()
    acts = [(a["username"], a["action"], a["target"]) for a in audit]
    assert ("viewer", "ack_alert", str(ids[1])) in acts
    assert ("admin", "ack_alerts", "lobby") in acts and ("admin", "ack_alerts", "all") in acts


def test_openapi_and_pages_are_served(app: LiveApp) -> None:
    spec = app.client.get("/api/openapi.json").json()
    for path in (
        "/api/people",
        "/api/search",
        "/api/sightings",
        "/api/alerts",
        "/api/cameras/{camera}/stream.mjpeg",
        "/api/events",
        "/api/login",
    ):
        assert path in spec["paths"], path
    page = app.client.get("/")
    assert page.status_code == 200 and "/static/core.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    scripts = re.findall(r'<script src="(/static/[a-z]+\.js)"', page.text)
    assert "/static/core.js" in scripts and "/static/live.js" in scripts
    for script in scripts:  # every page's file is served
        assert app.client.get(script).status_code == 200, script


def _add_user(app: LiveApp, name: str, password: str, role: str = "viewer") -> None:
    r = app.client.post(
        "/api/users",
        headers=app.admin,
        json={"username": name, "password": password, "role": role},
    )
    assert r.status_code == 201, r.text


def _api_token(app: LiveApp, username: str) -> dict[str, str]:
    r = app.client.post("/api/tokens", headers=app.admin, json={"name": "ci", "username": username})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _works(app: LiveApp, headers: dict[str, str]) -> bool:
    r = app.client.get("/api/me", headers=headers)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def test_user_changes_own_password_and_other_sessions_end(app: LiveApp) -> None:
    old, new = "amber-quilt-lantern", "violet-harbor-compass"
    _add_user(app, "carol", old)
    mine, other = app.login("carol", old), app.login("carol", old)
    script = _api_token(app, "carol")
    url = "/api/users/carol/password"

    r = app.client.post(
        url, headers=mine, json={"current_password": "wrong-guess!", "new_password": new}
    )
    assert r.status_code == 403 and r.json()["detail"] == "the current password is wrong"
    assert _works(app, mine), "a wrong current password does not log the caller out"
    r = app.client.post(url, headers=mine, json={"new_password": new})
    assert r.status_code == 422 and "current_password" in r.json()["detail"]
    r = app.client.post(url, headers=mine, json={"current_password": old, "new_password": "short"})
    assert r.status_code == 422, "the rules of account creation: at least 10 characters"
    r = app.client.post(
        "/api/users/admin/password",
        headers=mine,
        json={"current_password": old, "new_password": "taken-over-admin"},
    )
    assert r.status_code == 403, "a viewer cannot set someone else's password"
    assert all(_works(app, h) for h in (mine, other, script)), "nothing changed yet"

    r = app.client.post(url, headers=mine, json={"current_password": old, "new_password": new})
    assert r.status_code == 200, r.text
    assert r.json() == {"username": "carol", "revoked_tokens": 2}
    assert _works(app, mine), "the caller's own session goes on"
    assert not _works(app, other), "another log-in session of carol ended"
    assert not _works(app, script), "carol's API token was revoked"
    r = app.client.post("/api/login", json={"username": "carol", "password": old})
    assert r.status_code == 401
    assert _works(app, app.login("carol", new))

    admin = app.admin
    assert _works(app, admin), "other users' sessions are untouched"
    actions = [
        (a["action"], a["target"]) for a in app.client.get("/api/audit", headers=admin).json()
    ]
    assert ("change_password", "carol") in actions
    assert ("password_change_failed", "carol") in actions


def test_wrong_current_passwords_count_towards_the_login_lock(app: LiveApp) -> None:
    pw = "mossy-cedar-ticket-1"
    _add_user(app, "dave", pw)
    dave = app.login("dave", pw)
    body = {"current_password": "not-the-password", "new_password": "mossy-cedar-ticket-2"}
    for _ in range(5):
        r = app.client.post("/api/users/dave/password", headers=dave, json=body)
        assert r.status_code == 403
    r = app.client.post(
        "/api/users/dave/password",
        headers=dave,
        json={"current_password": pw, "new_password": "mossy-cedar-ticket-2"},
    )
    assert r.status_code == 429, "locked even with the right password"
    r = app.client.post("/api/login", json={"username": "dave", "password": pw})
    assert r.status_code == 429, "the log-in of that user name is locked too"
    assert _works(app, dave)


def test_admin_resets_another_users_password(app: LiveApp) -> None:
    old = "granite-owl-meadow"
    _add_user(app, "erin", old)
    session, script = app.login("erin", old), _api_token(app, "erin")
    admin = app.admin

    r = app.client.post(
        "/api/users/nobody/password", headers=admin, json={"new_password": "x" * 12}
    )
    assert r.status_code == 404
    r = app.client.post("/api/users/erin/password", headers=admin, json={"new_password": "short"})
    assert r.status_code == 422
    r = app.client.post(
        "/api/users/admin/password", headers=admin, json={"new_password": "admin-new-password"}
    )
    assert r.status_code == 422, "an admin's own password also needs the current one"

    r = app.client.post(
        "/api/users/erin/password",
        headers=admin,
        json={"new_password": "copper-fern-signal", "keep_api_tokens": True},
    )
    assert r.status_code == 200, r.text
    assert r.json()["revoked_tokens"] == 1
    assert not _works(app, session), "erin's log-in session ended"
    assert _works(app, script), "kept on request: keep_api_tokens"
    assert _works(app, admin)
    r = app.client.post("/api/login", json={"username": "erin", "password": old})
    assert r.status_code == 401
    erin = app.login("erin", "copper-fern-signal")

    r = app.client.post(
        "/api/users/erin/password", headers=admin, json={"new_password": "saffron-dune-railway"}
    )
    assert r.status_code == 200 and r.json()["revoked_tokens"] == 2
    assert not _works(app, erin) and not _works(app, script)
    actions = [
        (a["action"], a["target"]) for a in app.client.get("/api/audit", headers=admin).json()
    ]
    assert actions.count(("reset_password", "erin")) == 2


def test_admin_changes_roles_disables_users_and_filters_the_audit_log(app: LiveApp) -> None:
    admin = app.admin
    viewer = app.add_viewer("vic")
    assert app.client.get("/api/users", headers=viewer).status_code == 403

    r = app.client.patch("/api/users/vic", headers=admin, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert app.client.get("/api/users", headers=viewer).status_code == 200, "an admin now"
    r = app.client.patch("/api/users/vic", headers=admin, json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert app.client.get("/api/me", headers=viewer).status_code == 401, "tokens stop at once"
    r = app.client.patch("/api/users/vic", headers=admin, json={"disabled": False})
    assert app.client.get("/api/me", headers=viewer).status_code == 200, "and come back"

    assert app.client.patch("/api/users/vic", headers=admin, json={}).status_code == 422
    assert (
        app.client.patch("/api/users/vic", headers=admin, json={"role": "god"}).status_code == 422
    )
    assert (
        app.client.patch("/api/users/nobody", headers=admin, json={"role": "viewer"}).status_code
        == 404
    )
    own = app.client.patch("/api/users/admin", headers=admin, json={"disabled": True})
    assert own.status_code == 409
    app.client.patch("/api/users/vic", headers=admin, json={"role": "viewer"})
    assert (
        app.client.patch("/api/users/admin", headers=viewer, json={"role": "viewer"}).status_code
        == 403
    )

    def audit(**params: Any) -> list[tuple[str, str, str]]:
        r = app.client.get("/api/audit", headers=admin, params=params)
        assert r.status_code == 200, r.text
        return [(a["username"], a["action"], a["target"]) for a in r.json()]

    assert audit(action="change_role") == [
        ("admin", "change_role", "vic"),
        ("admin", "change_role", "vic"),
    ]
    assert [a[1] for a in audit(username="admin", action="disable_user")] == ["disable_user"]
    assert ("admin", "enable_user", "vic") in audit(username="admin")
    assert all(a[0] == "vic" for a in audit(username="vic"))
    everything = app.client.get("/api/audit", headers=admin, params={"limit": 3}).json()
    older = app.client.get(
        "/api/audit", headers=admin, params={"limit": 3, "before": everything[-1]["id"]}
    ).json()
    assert older and all(a["id"] < everything[-1]["id"] for a in older), "the next page"


def test_search_pages_and_takes_the_largest_face_when_asked(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    run = feed(app)
    t0 = time.time() - 60
    for i, photo in enumerate(["obama2.jpg", "obama3.jpg", "obama.jpg", "biden.jpg"]):
        run("lobby", photo, i, t0 + i * 2)
    assert app.record.flush(30)
    query = photos["obama.jpg"].read_bytes()

    def page(offset: int, limit: int = 1) -> dict[str, Any]:
        r = app.client.post(
            "/api/search",
            headers=app.admin,
            data={"offset": str(offset), "limit": str(limit)},
            files={"photo": ("q.jpg", query)},
        )
        assert r.status_code == 200, r.text
        return r.json()

    everything = page(0, 10)
    assert everything["total"] == 3
    pages = [page(i) for i in range(4)]
    assert [p["total"] for p in pages] == [3, 3, 3, 3]
    assert [h["id"] for p in pages for h in p["items"]] == [h["id"] for h in everything["items"]]
    assert pages[3]["items"] == [], "past the end: an empty page"

    two = {"photo": ("two.jpg", _two_faces(photos))}
    r = app.client.post("/api/search", headers=app.admin, files=two)
    assert r.status_code == 422 and r.json()["detail"]["refused"][0]["several_faces"] is True
    r = app.client.post("/api/search", headers=app.admin, data={"largest": "true"}, files=two)
    assert r.status_code == 200 and r.json()["total"] >= 1, r.text
    bad = app.client.post(
        "/api/search", headers=app.admin, data={"offset": "-1"}, files={"photo": ("q.jpg", query)}
    )
    assert bad.status_code == 422


def test_clips_of_alerts_and_sightings_are_served_to_a_logged_in_user_and_audited(
    start_app: Callable[..., LiveApp],
    db_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
) -> None:
    app = start_app(db_url, clips={"pre_roll_s": 1.0, "post_roll_s": 1.0})
    assert _enroll(app, "obama", ("obama.jpg", photos["obama.jpg"].read_bytes())).is_success
    run = feed(app)
    t0 = time.time() - 60
    for i in range(6):  # obama on the lobby camera for 0.5 s, then a stranger for 3 s
        run("lobby", "obama2.jpg", i, t0 + i * 0.1)
    for i in range(7):
        run("lobby", "biden.jpg", 6 + i, t0 + 1 + i * 0.5)
    assert app.record.flush(30)
    assert app.record.clips is not None
    app.record.clips.close()  # the stranger's appearance ends with the camera's last frame

    viewer = app.add_viewer()
    [alert] = app.client.get("/api/alerts", headers=viewer).json()
    assert alert["clip_url"] == f"/api/alerts/{alert['id']}/clip.mp4"
    assert httpx.get(app.url + alert["clip_url"]).status_code == 401, "no session, no clip"
    clip = app.client.get(alert["clip_url"], headers=viewer)
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert clip.headers["cache-control"] == "no-store"
    with av.open(io.BytesIO(clip.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert len(list(container.decode(stream))) >= 6
    at_start = app.client.get(alert["frame_url"], headers=viewer)
    assert at_start.status_code == 200 and at_start.headers["content-type"] == "image/jpeg"
    assert decode_jpeg(at_start.content).shape[1] >= 320, "the whole frame, not the crop"
    part = app.client.get(alert["clip_url"], headers={**viewer, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == clip.content[100:200]

    stranger = [
        s
        for s in app.client.get("/api/sightings", headers=viewer).json()["items"]
        if s["person"] is None
    ]
    assert stranger, "the stranger was stored"
    assert stranger[0]["clip_url"] == f"/api/sightings/{stranger[0]['id']}/clip.mp4"
    other = app.client.get(stranger[0]["clip_url"], headers=viewer)
    assert other.status_code == 200 and other.content[4:8] == b"ftyp"
    # the whole annotated frame of a sighting, taken from the clip that covers it
    assert stranger[0]["frame_url"] == f"/api/sightings/{stranger[0]['id']}/frame.jpg"
    assert httpx.get(app.url + stranger[0]["frame_url"]).status_code == 401
    whole = app.client.get(stranger[0]["frame_url"], headers=viewer)
    assert whole.status_code == 200 and whole.headers["content-type"] == "image/jpeg"
    frame = decode_jpeg(whole.content)
    crop = decode_jpeg(app.client.get(stranger[0]["snapshot_url"], headers=viewer).content)
    assert frame.shape[0] > crop.shape[0] and frame.shape[1] > crop.shape[1], "not the crop"
    elsewhere = NewSighting(
        camera="yard", frame=1, ts=time.time(), track=-1, person=None, distance=None,
        box=(0, 0, 9, 9), votes=0, face=0, embedding=None, snapshot=None,
    )  # fmt: skip
    (uncovered,) = app.services.store.add_sightings([elsewhere])
    no_clip = app.client.get(f"/api/sightings/{uncovered}/frame.jpg", headers=viewer)
    assert no_clip.status_code == 404, "no clip covers it"
    assert app.client.get("/api/alerts/999999/clip.mp4", headers=viewer).status_code == 404

    # the whole clip fetched with ranges that do not start at byte 0 is logged too
    sly = app.add_viewer("sly")
    for rng in ("bytes=-99999999", "bytes=1-,0-0", "bytes=1-"):
        got = app.client.get(alert["clip_url"], headers={**sly, "Range": rng})
        assert got.status_code == 206, (rng, got.status_code)

    audit = app.client.get("/api/audit", headers=app.admin).json()
    played = [(a["username"], a["target"]) for a in audit if a["action"] == "clip"]
    assert sorted(played) == [
        ("sly", f"alert {alert['id']}"),
        ("viewer", f"alert {alert['id']}"),
        ("viewer", f"sighting {stranger[0]['id']}"),
    ], "each user's play of a clip is logged once, whatever parts the player asks for"
