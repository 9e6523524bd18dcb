"""History by appearance: stored sightings grouped into a person's continuous presence
at a camera, with the best crop and a confidence instead of a raw distance."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sauron.serve.web.routes_appearances import group_appearances
from sauron.serve.web.routes_history import confidence
from sauron.store.db import SightingInfo

from .conftest import Feed, LiveApp
from .test_api import _enroll


def _s(i: int, camera: str, ts: float, person: str | None, track: int = 1) -> SightingInfo:
    return SightingInfo(
        id=i,
        camera=camera,
        frame=i,
        ts=ts,
        track=track,
        person=person,
        distance=0.3,
        box=(0, 0, 1, 1),
        votes=1,
        has_snapshot=False,
    )


def test_sightings_group_by_camera_person_and_gap() -> None:
    rows = [
        _s(1, "lobby", 0.0, "ann"),
        _s(2, "lobby", 1.5, "ann"),
        _s(3, "gate", 1.0, "ann"),  # another camera: its own appearance
        _s(4, "lobby", 9.0, "ann"),  # after a gap longer than 2 s: a new one
        _s(5, "lobby", 1.0, None, track=7),  # unknown faces: by track
        _s(6, "lobby", 2.0, None, track=8),
    ]
    runs = group_appearances(rows[::-1], gap_s=2.0)
    assert sorted([s.id for s in r] for r in runs) == [[1, 2], [3], [4], [5], [6]]


def test_confidence_is_half_at_the_tolerance() -> None:
    assert confidence(0.0, 0.6) == 100.0
    assert confidence(0.6, 0.6) == 50.0
    assert confidence(0.3, 0.6) == 75.0
    assert confidence(1.5, 0.6) == 0.0
    assert confidence(None, 0.6) is None


def test_history_by_appearance_over_the_api(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    assert _enroll(app, "obama", ("o.jpg", photos["obama.jpg"].read_bytes())).status_code == 201
    run = feed(app)
    t0 = time.time() - 60
    for i in range(3):  # one appearance: sightings stored at most once a second
        run("lobby", "obama2.jpg", i, t0 + i * 1.1)
    run("lobby", "biden.jpg", 3, t0 + 0.5)  # a stranger
    run("lobby", "obama3.jpg", 4, t0 + 20)  # back after a long gap: a new appearance
    assert app.record.flush(30)

    r = app.client.get("/api/appearances", headers=app.admin)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["scanned"] == 5 and not page["truncated"]
    got = [(a["camera"], a["person"], a["sightings"]) for a in page["items"]]
    assert got == [("lobby", "obama", 1), ("lobby", "obama", 3), ("lobby", None, 1)]
    first = page["items"][1]
    assert first["first_seen"] == t0 and abs(first["last_seen"] - (t0 + 2.2)) < 1e-6
    assert 50 < first["confidence"] <= 100, "a named face is above the 50 % threshold"
    assert first["best"]["distance"] == min(
        s["distance"]
        for s in app.client.get(
            "/api/sightings", headers=app.admin, params={"person": "obama", "until": t0 + 5}
        ).json()["items"]
    )
    assert app.client.get(first["best"]["snapshot_url"], headers=app.admin).status_code == 200
    only = app.client.get(
        "/api/appearances", headers=app.admin, params={"named": True, "until": t0 + 10}
    ).json()
    assert [a["sightings"] for a in only["items"]] == [3]
    assert app.client.get("/api/appearances?scan=0", headers=app.admin).status_code == 422
    assert httpx.get(f"{app.url}/api/appearances").status_code == 401
