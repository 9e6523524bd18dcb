"""Snapshots and clips as private files beside the database, on SQLite and PostgreSQL:
paths in the rows, traversal refused, a schema-1 store still served, retention by age
and by disk budget."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from sauron.store import StoreError
from sauron.store.db import NewClip, NewPhoto, NewSighting, SightingFilter, Store
from sauron.store.media import MediaDir, MediaPathError
from sauron.store.migrations import migrate
from sauron.store.retention import RetentionPolicy, apply, enforce_budget


def _sighting(ts: float, snapshot: bytes | None = b"\xff\xd8snap", face: int = 0) -> NewSighting:
    return NewSighting(
        camera="door",
        frame=int(ts),
        ts=ts,
        face=face,
        track=1,
        person=None,
        distance=None,
        box=(1, 2, 30, 40),
        embedding=None,
        snapshot=snapshot,
        votes=0,
    )


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _clip(store: Store, kind: str, start: float, end: float) -> int:
    path = store.media.write("clips", "door", start, b"\x00" * 1000, ".mp4")
    person = "alice" if kind == "alert" else None
    return store.add_clip(NewClip("door", kind, person, start, end, path, 1000))


def test_snapshots_are_private_files_and_the_rows_keep_their_paths(store: Store) -> None:
    [sid] = store.add_sightings([_sighting(1000.0)])
    alert = store.add_alert("alice", "door", 1000.0, 0.3, b"\xff\xd8alert")
    assert store.sighting_snapshot(sid) == b"\xff\xd8snap"
    assert store.alert_snapshot(alert.id) == b"\xff\xd8alert"
    with store.engine.connect() as conn:
        blob, path = conn.execute(
            sa.text("SELECT snapshot, snapshot_path FROM sightings WHERE id = :i"), {"i": sid}
        ).one()
    assert blob is None and path.startswith("snapshots/1970-01-01/door-")
    files = _files(store.media.root)
    assert len(files) == 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700, f.parent
    assert stat.S_IMODE(store.media.root.stat().st_mode) == 0o700


def test_a_sighting_stored_twice_leaves_no_stray_file(store: Store) -> None:
    assert len(store.add_sightings([_sighting(5.0)])) == 1
    assert store.add_sightings([_sighting(5.0)]) == []
    assert len(_files(store.media.root)) == 1


def test_a_renamed_person_keeps_their_clips_and_a_tampered_path_is_refused(
    store: Store,
) -> None:
    emb = np.zeros(128, np.float32)
    store.add_person("alice", [NewPhoto("p.jpg", "image/jpeg", b"\xff\xd8jpeg", emb, 10, 10)])
    alert = store.add_alert("alice", "door", 100.0, 0.3, None)
    _clip(store, "alert", 95.0, 110.0)
    store.rename_person("alice", "alicia")
    assert store.alert_clip(alert.id) is not None, "the clip follows the new id"
    with store.session() as s:  # a row edited to point out of the media folder
        s.execute(sa.text("UPDATE clips SET path = 'clips/../../../etc/passwd'"))
    assert store.alert_clip(alert.id) is None, "refused (and logged), not an error"


@pytest.mark.parametrize(
    "bad",
    ["../sauron.db", "/etc/passwd", "snapshots/../../x", "other/a.jpg", "", "snapshots\\..\\x"],
)
def test_paths_that_leave_the_media_folder_are_refused(tmp_path: Path, bad: str) -> None:
    media = MediaDir(tmp_path / "media")
    with pytest.raises(MediaPathError):
        media.read(bad)


def test_a_link_out_of_the_media_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not a face")
    media = MediaDir(tmp_path / "media")
    rel = media.new_path("snapshots", "door", 0.0, ".jpg")
    os.symlink(secret, media.root / rel)
    with pytest.raises(MediaPathError, match="outside"):
        media.read(rel)


def test_a_schema_1_store_keeps_its_blob_snapshots(db_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert migrate(engine, target=1) == 1
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO sightings (camera, frame, ts, face, track, x0, y0, x1, y1, "
                    "snapshot) VALUES ('door', 1, 1.0, 0, 1, 0, 0, 9, 9, :b)"
                ),
                {"b": b"\xff\xd8old"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (person, camera, started_at, last_seen_at, frames, "
                    "distance, snapshot) VALUES ('alice', 'door', 1.0, 2.0, 3, 0.3, :b)"
                ),
                {"b": b"\xff\xd8olda"},
            )
    finally:
        engine.dispose()
    store = Store(db_url, tmp_path / "media")
    try:
        store.migrate()
        [old] = store.sightings(SightingFilter())
        assert old.has_snapshot and store.sighting_snapshot(old.id) == b"\xff\xd8old"
        [alert] = store.alerts()
        assert alert.has_snapshot and store.alert_snapshot(alert.id) == b"\xff\xd8olda"
        [new] = store.add_sightings([_sighting(2.0)])
        assert store.sighting_snapshot(new) == b"\xff\xd8snap"
        assert store.purge_before(3.0).sightings == 2
        assert _files(store.media.root) == []
    finally:
        store.close()


def test_clips_are_found_by_alert_and_by_the_time_of_a_sighting(store: Store) -> None:
    alert = store.add_alert("alice", "door", 100.0, 0.3, None)
    later = store.add_alert("alice", "door", 400.0, 0.3, None)
    _clip(store, "alert", 95.0, 110.0)
    _clip(store, "sighting", 200.0, 210.0)
    [inside, outside] = store.add_sightings([_sighting(205.0), _sighting(300.0)])
    file = store.alert_clip(alert.id)
    assert file is not None and file.is_relative_to(store.media.root)
    assert store.alert_clip(later.id) is None
    assert store.sighting_clip(inside) is not None
    assert store.sighting_clip(outside) is None
    assert store.alerts_with_clips(store.alerts()) == {alert.id}
    assert store.sightings_with_clips(store.sightings(SightingFilter())) == {inside}
    assert store.purge_clips_before("sighting", 1000.0) == 1
    assert store.alert_clip(alert.id) is not None, "clips of another kind stay"
    assert store.purge_before(1000.0).clips == 1
    assert _files(store.media.root) == []


def test_a_returning_visitors_alert_has_the_clip_of_the_unknown_faces_then(store: Store) -> None:
    back = store.add_alert("visitor 3", "door", 202.0, 0.2, None, last_seen_at=204.0, visitor_id=3)
    elsewhere = store.add_alert("visitor 3", "door", 500.0, 0.2, None, visitor_id=3)
    named = store.add_alert("alice", "door", 203.0, 0.3, None)
    _clip(store, "sighting", 200.0, 210.0)
    assert store.alert_clip(back.id) is not None
    assert store.alert_clip(elsewhere.id) is None
    assert store.alert_clip(named.id) is None, "a watched person's alert takes only theirs"
    assert store.alerts_with_clips(store.alerts()) == {back.id}


def test_the_disk_budget_deletes_the_oldest_sightings_before_any_alert(store: Store) -> None:
    now = time.time()
    snap = b"\xff" * 1000
    store.add_sightings([_sighting(now - 100 + i, snap, face=i) for i in range(10)])
    old_alert = store.add_alert("alice", "door", now - 500, 0.3, snap)
    _clip(store, "alert", now - 505, now - 490)
    _clip(store, "sighting", now - 99, now - 80)
    assert store.media_usage().total == 13000
    freed = enforce_budget(store, 8000)
    assert freed >= 5000 and store.media_usage().total <= 8000
    left = store.sightings(SightingFilter(), limit=100)
    assert min(s.ts for s in left) > now - 100 + 2, "the oldest went first"
    assert [a.id for a in store.alerts()] == [old_alert.id], "alerts are kept longest"
    enforce_budget(store, 1)
    assert store.alerts() == [] and store.sightings(SightingFilter()) == []
    assert store.media_usage().total == 0
    assert _files(store.media.root) == []


def test_one_retention_pass_applies_ages_clip_ages_and_the_budget(store: Store) -> None:
    now = time.time()
    store.add_sightings([_sighting(now - 40 * 86400), _sighting(now - 10, b"x" * 500)])
    _clip(store, "sighting", now - 9 * 86400, now - 8 * 86400)
    _clip(store, "alert", now - 9 * 86400, now - 8 * 86400)
    policy = RetentionPolicy.from_gb(30, 0, alert_clip_days=30, sighting_clip_days=7)
    counts = apply(store, policy)
    assert (counts.sightings, counts.clips) == (1, 1)
    assert store.media_usage().alert_clips == 1000


def test_without_a_media_folder_a_server_database_refuses_snapshots_clearly(
    db_url: str,
) -> None:
    store = Store(db_url)  # no media folder given
    try:
        store.migrate()
        store.add_sightings([_sighting(1.0, snapshot=None)])  # rows alone need none
        if db_url.startswith("sqlite"):  # beside the SQLite file
            path = sa.make_url(db_url).database
            assert path is not None
            assert store.media.root == Path(path).absolute().parent / "media"
        else:
            with pytest.raises(StoreError, match="no media folder"):
                store.add_sightings([_sighting(2.0)])
    finally:
        store.close()
