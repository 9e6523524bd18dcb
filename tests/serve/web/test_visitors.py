"""Visitors over the REST API, fed real photos through the real stages (SQLite and
PostgreSQL): strangers grouped, merge, split, promote to the watchlist, search."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import Feed, LiveApp


def visitors(app: LiveApp, **params: Any) -> list[dict[str, Any]]:
    r = app.client.get("/api/visitors", headers=app.admin, params=params)
    assert r.status_code == 200, r.text
    return list(r.json())


def strangers_seen(app: LiveApp, feed: Callable[[LiveApp], Feed]) -> None:
    """Nobody enrolled: Biden on two cameras, Obama in three photos on two cameras."""
    run = feed(app)
    t = time.time() - 100
    for i, (camera, photo) in enumerate(
        [
            ("door", "biden.jpg"),
            ("hall", "biden.jpg"),
            ("door", "obama2.jpg"),
            ("yard", "obama3.jpg"),
            ("yard", "obama_partial_face.jpg"),
        ]
    ):
        run(camera, photo, i, t + 10 * i)
    assert app.record.flush()


def test_strangers_are_grouped_into_visitors_across_cameras(
    app: LiveApp, feed: Callable[[LiveApp], Feed]
) -> None:
    strangers_seen(app, feed)
    by_visits = visitors(app, sort="visits")
    assert [v["visits"] for v in by_visits] == [3, 2]
    obama, biden = by_visits
    assert obama["cameras"] == ["door", "yard"] and biden["cameras"] == ["door", "hall"]
    assert obama["label"] == f"visitor {obama['id']}"
    assert [v["id"] for v in visitors(app, sort="recent")] == [obama["id"], biden["id"]]
    assert [v["id"] for v in visitors(app, camera="hall")] == [biden["id"]]
    crop = app.client.get(obama["crops"][0], headers=app.admin)
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    visits = app.client.get(f"/api/visitors/{obama['id']}/visits", headers=app.admin).json()
    assert sorted(v["camera"] for v in visits) == ["door", "yard", "yard"]
    assert visits[0]["started_at"] >= visits[-1]["started_at"]  # newest first


def test_merge_split_and_roles(app: LiveApp, feed: Callable[[LiveApp], Feed]) -> None:
    strangers_seen(app, feed)
    obama, biden = visitors(app, sort="visits")
    viewer = app.add_viewer()
    assert app.client.get("/api/visitors", headers=viewer).status_code == 200
    merge = f"/api/visitors/{obama['id']}/merge"
    assert app.client.post(merge, headers=viewer, json={"other": biden["id"]}).status_code == 403
    assert app.client.post(merge, headers=app.admin, json={"other": 999}).status_code == 404
    r = app.client.post(merge, headers=app.admin, json={"other": biden["id"]})
    assert r.status_code == 200 and r.json()["visits"] == 5
    assert app.client.get(f"/api/visitors/{biden['id']}", headers=app.admin).status_code == 404
    # the wrong ones split off again, one visit at a time
    visits = app.client.get(f"/api/visitors/{obama['id']}/visits", headers=app.admin).json()
    hall = next(v for v in visits if v["camera"] == "hall")
    assert app.client.post(f"/api/visits/{hall['id']}/split", headers=viewer).status_code == 403
    r = app.client.post(f"/api/visits/{hall['id']}/split", headers=app.admin)
    assert r.status_code == 200
    assert r.json()["old"]["visits"] == 4 and r.json()["new"]["visits"] == 1
    assert r.json()["new"]["cameras"] == ["hall"]
    actions = [a["action"] for a in app.client.get("/api/audit", headers=app.admin).json()]
    assert {"merge_visitors", "split_visit"} <= set(actions)


def test_promote_enrolls_the_best_crops_and_the_face_is_named_next_time(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    strangers_seen(app, feed)
    obama, biden = visitors(app, sort="visits")
    r = app.client.post(
        f"/api/visitors/{obama['id']}/promote", headers=app.add_viewer(), json={"name": "barack"}
    )
    assert r.status_code == 403
    r = app.client.post(
        f"/api/visitors/{obama['id']}/promote", headers=app.admin, json={"name": "barack"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "barack" and len(r.json()["photos"]) >= 1
    assert [v["id"] for v in visitors(app)] == [biden["id"]]
    (entry,) = [
        a
        for a in app.client.get("/api/audit", headers=app.admin).json()
        if a["action"] == "promote_visitor"
    ]
    assert json.loads(entry["detail"])["visitor"] == obama["id"]
    # the running matcher knows him now: his next photo is named, not a visitor
    feed(app)("gate", "obama.jpg", 9, time.time())
    assert app.record.flush()
    r = app.client.get("/api/sightings", headers=app.admin, params={"camera": "gate"})
    assert [s["person"] for s in r.json()["items"]] == ["barack"]
    # a clash with an enrolled name is refused
    r = app.client.post(
        f"/api/visitors/{biden['id']}/promote", headers=app.admin, json={"name": "barack"}
    )
    assert r.status_code == 409


def test_search_by_photo_finds_visitors(
    app: LiveApp, feed: Callable[[LiveApp], Feed], photos: dict[str, Path]
) -> None:
    strangers_seen(app, feed)
    _, biden = visitors(app, sort="visits")
    r = app.client.post(
        "/api/search",
        headers=app.admin,
        files={"photo": ("q.jpg", photos["biden.jpg"].read_bytes())},
    )
    assert r.status_code == 200, r.text
    assert [v["visitor_id"] for v in r.json()["visitors"]] == [biden["id"]]


def test_visitors_can_be_turned_off(
    start_app: Callable[..., LiveApp], db_url: str, feed: Callable[[LiveApp], Feed]
) -> None:
    app = start_app(db_url, visitors={"enabled": False})
    strangers_seen(app, feed)
    assert visitors(app) == []
    r = app.client.get("/api/sightings", headers=app.admin)
    assert len(r.json()["items"]) == 5  # the sightings themselves are kept as before


def test_the_visitor_routes_are_described_in_the_openapi_document(app: LiveApp) -> None:
    paths = app.client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/visitors",
        "/api/visitors/{visitor_id}/visits",
        "/api/visitors/{visitor_id}/merge",
        "/api/visits/{visit_id}/split",
        "/api/visitors/{visitor_id}/promote",
    ):
        op = next(iter(paths[path].values()))
        assert op.get("description") or op.get("summary"), path
