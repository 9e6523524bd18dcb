"""Visitors over the REST API, fed real photos through the real stages (SQLite and
PostgreSQL): strangers grouped, merge, split, promote to the watchlist, search, and the
alerts of returning visitors (pages, webhook)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Feed, LiveApp, read_alerts


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
    assert app.client.get("/api/alerts", headers=app.admin).json() == [], "no alert asked for"


def test_merge_split_and_roles(app: LiveApp, feed: Callable[[LiveApp], Feed]) -> None:
    strangers_seen(app, feed)
    obama, biden = visitors(app, sort="visits")
    viewer = app.add_viewer()
    assert app.client.get("/api/visitors", headers=viewer).status_code == 200
    merge = f"/api/visitors/{obama['id']}/merge"
    assert app.client.post(merge, headers=viewer, json={"other": biden["id"]}).status_code == 403
    assert app.client.post(merge, headers=app.admin, json={"other": 999}).status_code == 404
    huge = {"other": 2**63}  # past the ids' 64 bits: refused, not a database error
    assert app.client.post(merge, headers=app.admin, json=huge).status_code == 422
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


def test_two_promotions_of_one_visitor_at_once_make_one_person(
    app: LiveApp, feed: Callable[[LiveApp], Feed]
) -> None:
    strangers_seen(app, feed)
    obama, _ = visitors(app, sort="visits")
    url = f"/api/visitors/{obama['id']}/promote"
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda name: httpx.post(
                    app.url + url, headers=app.admin, json={"name": name}, timeout=60
                ),
                ["first-name", "second-name"],
            )
        )
    codes = sorted(r.status_code for r in answers)
    assert codes[0] == 201 and codes[1] in (404, 409), [r.text for r in answers]
    people = {p["name"] for p in app.client.get("/api/people", headers=app.admin).json()}
    assert len(people & {"first-name", "second-name"}) == 1, people


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


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def test_a_returning_visitor_alerts_on_a_chosen_camera_and_at_the_nth_visit(
    start_app: Callable[..., LiveApp],
    db_url: str,
    feed: Callable[[LiveApp], Feed],
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, hooked = webhook
    app = start_app(
        db_url,
        visitors={"alert_cameras": ["hall"], "alert_visits": 3},
        alerts={"webhook_url": url},
    )
    pushed: list[dict[str, Any]] = []
    stop, ready = threading.Event(), threading.Event()
    reader = threading.Thread(
        target=read_alerts, args=(app.url, app.admin, pushed, stop, ready), daemon=True
    )
    reader.start()
    assert ready.wait(10)
    run = feed(app)
    t = time.time() - 100
    for i, (camera, photo) in enumerate(
        [
            ("hall", "biden.jpg"),  # a new visitor on the chosen camera: no return, no alert
            ("door", "biden.jpg"),  # Biden's 2nd visit, elsewhere
            ("door", "obama2.jpg"),  # a new visitor
            ("yard", "obama3.jpg"),  # Obama's 2nd
            ("yard", "obama_partial_face.jpg"),  # Obama's 3rd: alert_visits
            ("hall", "biden.jpg"),  # Biden back in the hall, his 3rd: both rules
        ]
    ):
        run(camera, photo, i, t + 10 * i)
    assert app.record.flush()
    obama, biden = visitors(app, sort="recent")[::-1]
    assert (obama["visits"], biden["visits"]) == (3, 3)

    listed = app.client.get("/api/alerts", headers=app.admin).json()
    assert [(a["kind"], a["visitor_id"], a["camera"]) for a in listed] == [
        ("visitor", biden["id"], "hall"),
        ("visitor", obama["id"], "yard"),
    ]
    back = listed[0]
    assert back["person"] == f"visitor {biden['id']}" and back["confidence"] is None
    assert back["ts"] == t + 50 and back["distance"] < 0.5
    snap = app.client.get(back["snapshot_url"], headers=app.admin)
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
    filtered = app.client.get(
        "/api/alerts", headers=app.admin, params={"person": f"visitor {obama['id']}"}
    ).json()
    assert [a["id"] for a in filtered] == [listed[1]["id"]]

    deadline = time.monotonic() + 15
    while (len(hooked) < 2 or len(pushed) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for got in (hooked, pushed):  # the webhook and the open pages hear the same events
        assert [(e["id"], e["kind"], e["visitor_id"], e["visits"], e["reasons"]) for e in got] == [
            (listed[1]["id"], "visitor", obama["id"], 3, ["visits"]),
            (listed[0]["id"], "visitor", biden["id"], 3, ["camera", "visits"]),
        ]
        assert all(e["v"] == 1 and e["type"] == "alert" for e in got)
        assert got[1]["person"] == f"visitor {biden['id']}" and got[1]["camera"] == "hall"
    # an operator handles it like any alert
    r = app.client.post(f"/api/alerts/{back['id']}/ack", headers=app.admin)
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "admin"
