"""Visitors in the store, on SQLite and PostgreSQL: grouping, merge, split, retention."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from sauron.store import NotFound
from sauron.store.db import Store
from sauron.store.retention import purge
from sauron.store.visitors import NewVisit, VisitorStore

THRESHOLD = 0.5


def face(seed: int) -> np.ndarray:
    """A random 'person': a point about 1.4 from any other (like two strangers)."""
    return np.random.default_rng(seed).normal(0, 0.125, 128).astype(np.float32)


def near(base: np.ndarray, seed: int, step: float = 0.15) -> np.ndarray:
    """Another view of the same person: within ``step`` of ``base``."""
    d = np.random.default_rng(seed + 1000).normal(size=128)
    return (base + d / np.linalg.norm(d) * step).astype(np.float32)


def visit(emb: np.ndarray, camera: str = "door", ts: float = 100.0, q: float = 0.5) -> NewVisit:
    return NewVisit(camera, 7, ts, ts + 2, q, emb, b"\xff\xd8crop" + bytes([int(q * 100)]))


@pytest.fixture
def visitors(store: Store) -> VisitorStore:
    return VisitorStore(store, crops=2)


def test_views_of_one_stranger_group_and_another_stranger_is_apart(
    visitors: VisitorStore,
) -> None:
    ann, bob = face(1), face(2)
    first, new = visitors.add_visit(visit(ann, "door", 100), THRESHOLD)
    assert new
    for i, cam in enumerate(("hall", "door", "yard")):
        got, new = visitors.add_visit(visit(near(ann, i), cam, 200 + i, 0.2 + i / 10), THRESHOLD)
        assert (got, new) == (first, False)
    other, new = visitors.add_visit(visit(bob, "door", 300), THRESHOLD)
    assert new and other != first
    info = visitors.get(first)
    assert info.visits == 4
    assert info.cameras == ("door", "hall", "yard")
    assert (info.first_seen, info.last_seen) == (100, 204)
    assert len(info.best_visits) == 2  # crops=2, best first
    qualities = {v.id: v.quality for v in visitors.visits(first)}
    assert qualities[info.best_visits[0]] == max(qualities.values())
    assert [v.id for v in visitors.list_visitors(sort="visits")] == [first, other]
    assert [v.id for v in visitors.list_visitors(sort="recent")] == [other, first]
    assert [v.id for v in visitors.list_visitors(camera="yard")] == [first]
    assert visitors.best_crops(first)[0] == visitors.visit_snapshot(info.best_visits[0])
    found = visitors.nearest(near(ann, 9), THRESHOLD)
    assert [m.visitor.id for m in found] == [first]


def test_merge_keeps_the_first_id_and_split_makes_a_new_one(visitors: VisitorStore) -> None:
    a, _ = visitors.add_visit(visit(face(1)), THRESHOLD)
    b, _ = visitors.add_visit(visit(face(2), ts=500), THRESHOLD)
    merged = visitors.merge(a, b)
    assert merged.id == a and merged.visits == 2 and merged.last_seen == 502
    with pytest.raises(NotFound):
        visitors.get(b)
    wrong = next(v for v in visitors.visits(a) if v.started_at == 500)
    old, new = visitors.split(wrong.id)
    assert old is not None and old.id == a and old.visits == 1
    assert new.id not in (a, b) and new.visits == 1
    # the split-off stranger's next visit joins the new visitor, not the old one
    assert visitors.add_visit(visit(near(face(2), 3)), THRESHOLD) == (new.id, False)
    with pytest.raises(ValueError):
        visitors.merge(a, a)
    with pytest.raises(NotFound):
        visitors.merge(a, 12345)


def test_retention_deletes_old_visits_and_emptied_visitors(
    store: Store, visitors: VisitorStore
) -> None:
    old, _ = visitors.add_visit(visit(face(1), ts=1000), THRESHOLD)
    both, _ = visitors.add_visit(visit(face(2), ts=1000), THRESHOLD)
    visitors.add_visit(visit(near(face(2), 1), ts=5 * 86400), THRESHOLD)
    counts = purge(store, retention_days=1, now=5 * 86400)
    assert counts.extra["visits"] == 2
    assert [v.id for v in visitors.list_visitors()] == [both]
    assert visitors.get(both).first_seen == 5 * 86400
    with pytest.raises(NotFound):
        visitors.get(old)


def test_a_version_1_store_keeps_its_sightings_through_the_visitors_migration(
    db_url: str,
) -> None:
    from sauron.store.migrations import migrate

    engine = sa.create_engine(db_url)
    try:
        migrate(engine, target=1)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO sightings (camera, frame, ts, face, track, person, distance,"
                    " x0, y0, x1, y1) VALUES ('c', 1, 5.0, 0, 3, 'ann', 0.4, 1, 2, 3, 4)"
                )
            )
        assert migrate(engine) >= 2
    finally:
        engine.dispose()
    store = Store(db_url)
    try:
        from sauron.store.db import SightingFilter

        (row,) = store.sightings(SightingFilter())
        assert (row.person, row.votes) == ("ann", None)
        assert VisitorStore(store).list_visitors() == []
    finally:
        store.close()


def test_grouping_tells_the_visit_count_and_distance_for_the_return_alerts(
    visitors: VisitorStore,
) -> None:
    ann = face(1)
    first = visitors.group(visit(ann, "door", 100), THRESHOLD)
    assert (first.new, first.visits, first.distance) == (True, 1, 0.0)
    again = visitors.group(visit(near(ann, 1), "hall", 200), THRESHOLD)
    assert (again.visitor_id, again.new, again.visits) == (first.visitor_id, False, 2)
    assert again.distance == pytest.approx(0.15, abs=1e-3), "to the centroid before joining"
    assert [v.id for v in visitors.visits(first.visitor_id)] == [again.visit_id, first.visit_id]
    third = visitors.group(visit(near(ann, 2), "yard", 300), THRESHOLD)
    assert (third.visits, visitors.get(first.visitor_id).visits) == (3, 3)


def test_a_visitor_alert_is_stored_as_an_alert_that_names_the_visitor(store: Store) -> None:
    watched = store.add_alert("ann", "door", 10.0, 0.3, b"\xff\xd8a")
    back = store.add_alert(
        "visitor 17", "hall", 20.0, 0.21, b"\xff\xd8v", last_seen_at=24.5, frames=9, visitor_id=17
    )
    listed = {a.id: a for a in store.alerts()}
    assert listed[watched.id].visitor_id is None
    got = listed[back.id]
    assert (got.person, got.visitor_id, got.camera) == ("visitor 17", 17, "hall")
    assert (got.started_at, got.last_seen_at, got.frames) == (20.0, 24.5, 9)
    assert store.alert(back.id) == got and store.alert_snapshot(back.id) == b"\xff\xd8v"
    assert [a.id for a in store.alerts(person="visitor 17")] == [back.id]
