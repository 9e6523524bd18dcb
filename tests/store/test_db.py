"""The Store on a real database: people, photos, sightings, alerts, accounts, audit."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from sauron.store import Conflict, NotFound
from sauron.store.accounts import Accounts
from sauron.store.db import NewPhoto, NewSighting, SightingFilter, Store


def _photo(seed: int) -> NewPhoto:
    emb = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return NewPhoto("p.jpg", "image/jpeg", b"\xff\xd8jpeg" + bytes([seed]), emb, 10, 10)


def _sighting(
    camera: str, ts: float, face: int = 0, person: str | None = None, emb: np.ndarray | None = None
) -> NewSighting:
    return NewSighting(
        camera=camera,
        frame=int(ts),
        ts=ts,
        face=face,
        track=1,
        person=person,
        distance=0.3 if person else None,
        box=(1, 2, 30, 40),
        embedding=emb,
        snapshot=b"snap",
        votes=0,
    )


def test_people_photos_rename_delete(store: Store) -> None:
    p = store.add_person("alice", [_photo(1), _photo(2)])
    assert [ph.filename for ph in p.photos] == ["p.jpg", "p.jpg"]
    with pytest.raises(Conflict):
        store.add_person("alice", [_photo(3)])
    store.add_photos("alice", [_photo(3)])
    wire = store.wire_person("alice")
    assert wire.embeddings.shape == (3, 128)
    np.testing.assert_array_equal(wire.embeddings[0], _photo(1).embedding)
    store.add_sightings([_sighting("cam", 1.0, person="alice")])
    store.add_alert("alice", "cam", 1.0, 0.3, b"x")
    store.rename_person("alice", "alicia")
    assert store.get_person("alice") is None
    assert store.sightings(SightingFilter(person="alicia"))[0].person == "alicia"
    assert store.alerts(person="alicia")[0].person == "alicia"
    first = store.get_person("alicia")
    assert first is not None
    store.delete_photo("alicia", first.photos[0].id)
    assert len(store.wire_person("alicia").embeddings) == 2
    assert store.delete_person("alicia")
    assert store.photo(first.photos[1].id) is None, "photos go with their person"
    assert store.wire_people() == []
    with pytest.raises(NotFound):
        store.wire_person("alicia")


def test_sightings_dedupe_filter_and_page(store: Store) -> None:
    rng = np.random.default_rng(0)
    rows = [
        _sighting(
            "a" if i % 2 else "b",
            1000.0 + i,
            person="bob" if i % 3 == 0 else None,
            emb=rng.standard_normal(128).astype(np.float32),
        )
        for i in range(30)
    ]
    ids = store.add_sightings(rows)
    assert len(ids) == 30
    assert store.add_sightings(rows[:5]) == [], "redelivered frames are not stored twice"
    page1 = store.sightings(SightingFilter(camera="a"), limit=10)
    page2 = store.sightings(SightingFilter(camera="a", before_id=page1[-1].id), limit=10)
    assert len(page1) == 10 and len(page2) == 5
    assert all(s.camera == "a" for s in page1 + page2)
    assert [s.id for s in page1 + page2] == sorted((s.id for s in page1 + page2), reverse=True)
    bob = store.sightings(SightingFilter(person="bob", since=1003.0, until=1020.0))
    assert sorted(s.ts for s in bob) == [1003.0, 1006.0, 1009.0, 1012.0, 1015.0, 1018.0]
    got_ids, mat = store.embeddings_after(ids[9])
    assert list(got_ids) == ids[10:]
    np.testing.assert_array_equal(mat[0], rows[10].embedding)


def test_accounts_tokens_expire_and_passwords_are_hashed(store: Store) -> None:
    acc = Accounts(store)
    generated = acc.bootstrap_admin("admin", None)
    assert generated and len(generated) >= 16
    assert acc.bootstrap_admin("admin", None) is None, "only on the very first start"
    admin = acc.check_password("admin", generated)
    assert admin is not None and admin.role == "admin"
    assert acc.check_password("admin", generated + "x") is None
    assert acc.check_password("nobody", generated) is None
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("$argon2id$") and generated not in stored
    token, _ = acc.issue_token(admin.id, kind="api", name="t", ttl_s=3600)
    p = acc.authenticate(token)
    assert p is not None and p.username == "admin"
    expired, _ = acc.issue_token(admin.id, kind="api", name="old", ttl_s=-1)
    assert acc.authenticate(expired) is None
    assert acc.authenticate("") is None
    acc.revoke(token)
    assert acc.authenticate(token) is None
    with pytest.raises(ValueError, match="at least"):
        acc.create_user("viewer", "short", "viewer")


def test_purge_removes_old_sightings_and_alerts_only(store: Store) -> None:
    now = time.time()
    store.add_sightings([_sighting("cam", now - 40 * 86400), _sighting("cam", now - 10)])
    store.add_alert("x", "cam", now - 40 * 86400, 0.2, None)
    counts = store.purge_before(now - 30 * 86400)
    assert (counts.sightings, counts.alerts) == (1, 1)
    left = store.sightings(SightingFilter())
    assert [s.ts for s in left] == [now - 10]
    assert store.alerts() == []


def test_audit_log(store: Store) -> None:
    store.audit("admin", "enroll", "alice", '{"photos": 2}')
    store.audit("viewer", "search", "q.jpg")
    log = store.audit_log()
    assert [(a.username, a.action, a.target) for a in log] == [
        ("viewer", "search", "q.jpg"),
        ("admin", "enroll", "alice"),
    ]


def test_a_late_decision_names_the_stored_unnamed_row_of_its_track(store: Store) -> None:
    store.add_sightings([_sighting("cam", 5.0, face=2), _sighting("cam", 6.0, face=0)])
    late = replace(_sighting("cam", 5.0, person="alice"), votes=1)
    other_track = replace(late, track=9)
    never_stored = replace(late, ts=7.0)
    assert store.name_late([late, other_track, never_stored]) == [other_track, never_stored]
    rows = {(s.ts, s.person, s.votes) for s in store.sightings(SightingFilter())}
    assert rows == {(5.0, "alice", 1), (6.0, None, 0)}
    # a row already named keeps its name
    assert store.name_late([replace(late, person="bob")]) == [replace(late, person="bob")]
    assert store.sightings(SightingFilter(person="alice"))[0].distance == 0.3
