"""The recorder's visitor grouping on a real store: one visit per stranger's track."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sauron.config import VisitorsConfig
from sauron.record.visitors import VisitorGrouper
from sauron.store.db import Store
from sauron.store.visitors import VisitorStore


def person(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.125, 128).astype(np.float32)


def grouper(tmp_path: Path) -> tuple[VisitorGrouper, VisitorStore]:
    store = Store(f"sqlite:///{tmp_path / 'v.db'}")
    store.migrate()
    visitors = VisitorStore(store)
    cfg = VisitorsConfig.model_validate({"track_end_s": 0.01})
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
