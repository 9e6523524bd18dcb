"""The recorder's visitor grouping on a real store: one visit per stranger's track, and
the alerts of returning visitors (a chosen camera, every Nth visit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sauron.config import VisitorsConfig
from sauron.record.visitors import VisitorAlert, VisitorGrouper
from sauron.store.db import Store
from sauron.store.visitors import VisitorStore


def person(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.125, 128).astype(np.float32)


def grouper(tmp_path: Path, **settings: Any) -> tuple[VisitorGrouper, VisitorStore]:
    store = Store(f"sqlite:///{tmp_path / 'v.db'}")
    store.migrate()
    visitors = VisitorStore(store)
    cfg = VisitorsConfig.model_validate({"track_end_s": 0.01, **settings})
    return VisitorGrouper(visitors, cfg, new_person_at=0.6), visitors


def test_one_visit_per_track_from_its_best_view(tmp_path: Path) -> None:
    g, visitors = grouper(tmp_path)
    ann = person(1)
    for i, q in enumerate((0.4, 0.9, 0.5)):
        g.face("door", 7, 10.0 + i, None, ann, q, lambda q=q: f"crop {q}".encode())
    assert g.end_idle(everything=True) == 1
    (v,) = visitors.list_visitors()
    assert v.visits == 1 and (v.first_seen, v.last_seen) == (10.0, 12.0)
    assert visitors.best_crops(v.id) == [b"crop 0.9"]


def test_named_tracks_and_poor_views_are_not_grouped(tmp_path: Path) -> None:
    g, visitors = grouper(tmp_path)
    g.face("door", 1, 1.0, None, person(1), 0.9, lambda: b"x")
    g.face("door", 1, 2.0, "ann", person(1), 0.9, lambda: b"x")  # a watched person
    g.face("door", 2, 1.0, None, person(2), 0.1, lambda: b"x")  # too poor a view
    assert g.end_idle(everything=True) == 0
    assert visitors.list_visitors() == []


def test_someone_else_in_a_named_tracks_place_is_grouped(tmp_path: Path) -> None:
    g, visitors = grouper(tmp_path)
    g.face("lobby", 5, 1.0, "ann", person(1), 0.9, lambda: b"ann")
    g.face("lobby", 5, 2.0, None, person(2), 0.8, lambda: b"bob")  # 1.4 away: not ann
    g.face("lobby", 5, 3.0, None, person(2), 0.8, lambda: b"bob")
    assert g.end_idle(everything=True) == 1
    (v,) = visitors.list_visitors()
    assert v.first_seen == 2.0 and visitors.best_crops(v.id) == [b"bob"]


def test_a_still_photos_face_is_grouped_at_once(tmp_path: Path) -> None:
    g, visitors = grouper(tmp_path)
    g.face("folder", -1, 1.0, None, person(3), 0.9, lambda: b"c")
    g.face("folder", -1, 2.0, None, person(3) + 0.01, 0.9, lambda: b"d")
    (v,) = visitors.list_visitors()
    assert v.visits == 2


def near(base: np.ndarray, seed: int) -> np.ndarray:
    """Another view of the same face: 0.15 from ``base`` (the threshold is 0.5)."""
    d = np.random.default_rng(seed + 1000).normal(size=128)
    return (base + d / np.linalg.norm(d) * 0.15).astype(np.float32)


def visit(g: VisitorGrouper, camera: str, track: int, emb: np.ndarray, ts: float) -> None:
    """One track of a stranger on ``camera``: three frames, then it ends."""
    for i in range(3):
        g.face(camera, track, ts + i, None, emb, 0.8, lambda: b"\xff\xd8crop")
    g.end_idle(everything=True)


def test_no_alert_unless_asked(tmp_path: Path) -> None:
    g, visitors = grouper(tmp_path)
    ann = person(1)
    for n in range(4):
        visit(g, "door", n, near(ann, n), 10.0 * n)
    assert [v.visits for v in visitors.list_visitors()] == [4]
    assert g.take_alerts() == []


def test_a_return_to_a_chosen_camera_alerts_but_a_first_visit_there_does_not(
    tmp_path: Path,
) -> None:
    g, visitors = grouper(tmp_path, alert_cameras=["vault"])
    ann, bob = person(1), person(2)
    visit(g, "vault", 1, ann, 0.0)  # a new visitor: nobody came back
    visit(g, "door", 2, near(ann, 1), 10.0)  # back, elsewhere
    assert g.take_alerts() == []
    visit(g, "vault", 3, near(ann, 2), 20.0)  # back, at the vault
    visit(g, "vault", 4, bob, 30.0)  # someone new at the vault
    (alert,) = g.take_alerts()
    (v,) = [v for v in visitors.list_visitors() if v.visits == 3]
    assert isinstance(alert, VisitorAlert)
    assert (alert.visitor_id, alert.label, alert.camera) == (v.id, f"visitor {v.id}", "vault")
    assert (alert.visits, alert.reasons, alert.frames) == (3, ("camera",), 3)
    assert (alert.started_at, alert.ended_at) == (20.0, 22.0)
    assert alert.snapshot == b"\xff\xd8crop" and 0 < alert.distance <= 0.5
    assert alert.visit_id == visitors.visits(v.id)[0].id
    assert g.take_alerts() == [], "taken once"
    event = alert.event(42)
    assert event["kind"] == "visitor" and event["person"] == f"visitor {v.id}"
    assert (event["visitor_id"], event["visits"], event["reasons"]) == (v.id, 3, ["camera"])
    assert event["snapshot_url"] == "/api/alerts/42/snapshot.jpg"


def test_the_nth_visit_alerts_and_every_nth_after(tmp_path: Path) -> None:
    g, _ = grouper(tmp_path, alert_visits=3, alert_cameras=["gate"])
    ann = person(1)
    raised: list[tuple[int, tuple[str, ...]]] = []
    for n in range(7):
        visit(g, "gate" if n == 5 else "door", n, near(ann, n), 10.0 * n)
        raised += [(a.visits, a.reasons) for a in g.take_alerts()]
    assert raised == [(3, ("visits",)), (6, ("camera", "visits"))]


def test_a_still_photos_return_alerts_too(tmp_path: Path) -> None:
    g, _ = grouper(tmp_path, alert_visits=2)
    g.face("folder", -1, 1.0, None, person(3), 0.9, lambda: b"c")
    assert g.take_alerts() == []
    g.face("folder", -1, 2.0, None, near(person(3), 1), 0.9, lambda: b"d")
    (alert,) = g.take_alerts()
    assert (alert.visits, alert.frames, alert.snapshot) == (2, 1, b"d")
