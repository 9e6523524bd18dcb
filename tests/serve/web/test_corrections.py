"""Corrections over the REST API on real photos: "not this person" keeps the same face
from that name afterwards; "this is X" adds the crop to X's photos. Audited, admins only."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import Feed, LiveApp


def enroll(app: LiveApp, name: str, photo: Path) -> None:
    r = app.client.post(
        "/api/people",
        headers=app.admin,
        data={"name": name},
        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
    )
    assert r.status_code == 201, r.text


def sightings(app: LiveApp, camera: str) -> list[dict[str, Any]]:
    assert app.record.flush()
    r = app.client.get("/api/sightings", headers=app.admin, params={"camera": camera})
    return list(r.json()["items"])


@pytest.fixture
def wrong_app(
    start_app: Callable[..., LiveApp],
    db_url: str,
    feed: Callable[[LiveApp], Feed],
    photos: dict[str, Path],
) -> LiveApp:
    """An app whose tolerance is so loose that Biden (0.84 from Obama) is taken for
    Obama, with Biden seen once on camera "door"."""
    app = start_app(db_url, match={"tolerance": 0.9, "confirm_above": 0.9})
    enroll(app, "obama", photos["obama.jpg"])
    feed(app)("door", "biden.jpg", 0, time.time() - 60)
    assert app.record.flush()
    return app


def test_not_this_person_stops_the_same_wrong_name(
    wrong_app: LiveApp, feed: Callable[[LiveApp], Feed]
) -> None:
    app = wrong_app
    run = feed(app)
    (wrong,) = sightings(app, "door")
    assert wrong["person"] == "obama"
    assert wrong["votes"] == 1  # an untracked face: named from its one embedding

    url = f"/api/sightings/{wrong['id']}/not-this-person"
    assert app.client.post(url, headers=app.add_viewer(), json={}).status_code == 403
    # a correction about someone else keeps the name it bears
    other = app.client.post(url, headers=app.admin, json={"person": "someone-else"})
    assert other.status_code in (200, 404), other.text
    assert sightings(app, "door")[0]["person"] == "obama"
    r = app.client.post(url, headers=app.admin, json={})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "not" and r.json()["person"] == "obama"
    assert sightings(app, "door")[0]["person"] is None  # relabelled

    # the running matcher consults the negative example: Biden is not named again,
    # Obama himself still is
    run("hall", "biden.jpg", 1, time.time() - 30)
    run("yard", "obama2.jpg", 2, time.time() - 20)
    assert [s["person"] for s in sightings(app, "hall")] == [None]
    assert [s["person"] for s in sightings(app, "yard")] == ["obama"]
    audit = app.client.get("/api/audit", headers=app.admin).json()
    assert any(a["action"] == "not_this_person" and a["target"] == "obama" for a in audit)

    bad = app.client.post("/api/sightings/999999/not-this-person", headers=app.admin, json={})
    assert bad.status_code == 404


def test_not_this_person_on_an_alert(wrong_app: LiveApp, feed: Callable[[LiveApp], Feed]) -> None:
    app = wrong_app
    (alert,) = app.client.get("/api/alerts", headers=app.admin).json()
    r = app.client.post(f"/api/alerts/{alert['id']}/not-this-person", headers=app.admin)
    assert r.status_code == 200, r.text
    feed(app)("hall", "biden.jpg", 1, time.time() - 30)
    assert [s["person"] for s in sightings(app, "hall")] == [None]


def test_this_is_adds_the_crop_to_the_persons_photos(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    enroll(app, "joe", photos["biden.jpg"])
    enroll(app, "barack", photos["obama.jpg"])
    feed(app)("door", "obama3.jpg", 0, time.time() - 60)
    (seen,) = sightings(app, "door")
    url = f"/api/sightings/{seen['id']}/this-is"
    assert (
        app.client.post(url, headers=app.add_viewer(), json={"person": "barack"}).status_code == 403
    )
    assert app.client.post(url, headers=app.admin, json={"person": "nobody"}).status_code == 404
    r = app.client.post(url, headers=app.admin, json={"person": "barack"})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "is"
    person = app.client.get("/api/people/barack", headers=app.admin).json()
    assert len(person["photos"]) == 2
    assert sightings(app, "door")[0]["person"] == "barack"
    # said again: refused, not a second copy of the same photo
    assert app.client.post(url, headers=app.admin, json={"person": "barack"}).status_code == 409
    person = app.client.get("/api/people/barack", headers=app.admin).json()
    assert len(person["photos"]) == 2
    audit = app.client.get("/api/audit", headers=app.admin).json()
    assert any(a["action"] == "this_is" and a["target"] == "barack" for a in audit)


def test_deleting_a_person_deletes_the_corrections_about_them(
    wrong_app: LiveApp, photos: dict[str, Path]
) -> None:
    app = wrong_app
    (wrong,) = sightings(app, "door")
    url = f"/api/sightings/{wrong['id']}/not-this-person"
    assert app.client.post(url, headers=app.admin, json={}).status_code == 200
    assert len(app.record.store.wire_person("obama").negatives) == 1
    assert app.client.delete("/api/people/obama", headers=app.admin).status_code == 204
    enroll(app, "obama", photos["obama.jpg"])
    assert len(app.record.store.wire_person("obama").negatives) == 0
