"""The search index: exact radius search, persistence, sync with the store, retention."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sauron.store.db import NewSighting, Store
from sauron.store.index import CHUNK_ROWS, FaceIndex
from sauron.store.retention import purge


def _people(n_people: int, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings clustered by identity like real faces (spread ~0.35 around a centre)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, 128)).astype(np.float32) * 0.09
    owner = np.repeat(np.arange(n_people), per)
    vecs = centres[owner] + rng.standard_normal((len(owner), 128)).astype(np.float32) * 0.025
    return vecs.astype(np.float32), owner


def test_search_is_exact_against_numpy(tmp_path: Path) -> None:
    vecs, _ = _people(50, 2 * CHUNK_ROWS // 50 + 7)  # spans several chunks
    index = FaceIndex(tmp_path)
    ids = np.arange(10, 10 + len(vecs), dtype=np.int64)
    assert index.add(ids, vecs) == len(vecs)
    q = vecs[123] + 0.01
    hits, total = index.search(q, radius=0.6, limit=50)
    d = np.linalg.norm(vecs - q, axis=1)
    want = np.flatnonzero(d <= 0.6)
    assert total == len(want) > 50
    assert [h.sighting_id for h in hits] == list(ids[want[np.argsort(d[want], kind="stable")]][:50])
    np.testing.assert_allclose([h.distance for h in hits], np.sort(d[want])[:50], atol=1e-4)


def test_reopen_and_torn_append_recovery(tmp_path: Path) -> None:
    vecs, _ = _people(3, 10)
    index = FaceIndex(tmp_path)
    index.add(np.arange(1, 31), vecs)
    with open(tmp_path / "vectors.f32", "ab") as fh:  # a crash half-way through an append
        fh.write(b"\x00" * 100)
    again = FaceIndex(tmp_path)
    assert len(again) == 30
    assert again.last_id == 30
    assert again.add(np.arange(1, 31), vecs) == 0, "ids already indexed are not added twice"
    hits, _ = again.search(vecs[0], radius=0.01)
    assert hits[0].sighting_id == 1


def test_sync_follows_the_store_and_retention(store: Store, tmp_path: Path) -> None:
    vecs, owner = _people(4, 25, seed=3)
    now = time.time()
    rows = [
        NewSighting(
            camera="c",
            frame=i,
            ts=now - (40 * 86400 if i < 40 else 0) + i,
            face=0,
            track=0,
            person=None,
            distance=None,
            box=(0, 0, 1, 1),
            embedding=v,
            snapshot=None,
            votes=0,
        )
        for i, v in enumerate(vecs)
    ]
    rows.append(
        NewSighting(
            camera="c",
            frame=999,
            ts=now,
            face=1,
            track=0,
            person=None,
            distance=None,
            box=(0, 0, 1, 1),
            embedding=None,
            snapshot=None,
            votes=0,
        )
    )
    store.add_sightings(rows)
    index = FaceIndex(tmp_path / "idx")
    assert index.sync(store) == 100, "rows without an embedding are not indexed"
    assert index.sync(store) == 0
    hits, total = index.search(vecs[0], radius=0.6, limit=1000)
    assert total == 25 and all(owner[h.sighting_id - 1] == 0 for h in hits)

    counts = purge(store, 30, index)
    assert counts.sightings == 40
    hits, total = index.search(vecs[0], radius=0.6, limit=1000)
    assert total == 0, "identity 0 lived in the purged rows only"
    assert len(index) == 60, "a purge of >= 1/4 of the rows compacts the files"
    hits, total = index.search(vecs[60], radius=0.6, limit=1000)
    assert total == 25

    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    other.migrate()
    try:
        assert index.sync(other) == 0
        assert len(index) == 0, "an index of another database is thrown away"
    finally:
        other.close()
