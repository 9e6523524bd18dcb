"""The in-memory watchlist: nearest-person search, the tolerance, updates, and scale."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sauron.codec import Person
from sauron.match.watchlist import Watchlist

DIM = 128


def axis(i: int, scale: float = 1.0) -> np.ndarray:
    """scale * the i-th unit vector: distances between these are exact in float32."""
    v = np.zeros(DIM, np.float32)
    v[i] = scale
    return v


def person(name: str, *rows: np.ndarray) -> Person:
    return Person(name=name, embeddings=np.stack(rows).astype(np.float32))


@pytest.fixture
def watchlist() -> Watchlist:
    return Watchlist([person("alice", axis(0)), person("bob", axis(1), axis(2))])


def test_nearest_names_the_closest_reference(watchlist: Watchlist) -> None:
    queries = np.stack([axis(0, 1.25), axis(2, 0.5), axis(1, 1.0), axis(5)])
    names, dist = watchlist.nearest(queries)
    assert names == ["alice", "bob", "bob", "alice"]
    assert dist.dtype == np.float32
    # |1.25 e0 - e0| = 0.25; |0.5 e2 - e2| = 0.5; exact hit = 0; e5 is sqrt(2) from all
    np.testing.assert_allclose(dist, [0.25, 0.5, 0.0, np.sqrt(2)], atol=1e-6)


def test_nearest_takes_the_best_of_a_persons_references() -> None:
    wl = Watchlist([person("bob", axis(1), axis(2)), person("carol", axis(1, 1.5))])
    names, dist = wl.nearest(axis(2, 0.9)[None])
    assert names == ["bob"]
    np.testing.assert_allclose(dist, [0.1], atol=1e-6)


@pytest.mark.parametrize(
    ("scale", "tolerance", "matched"),
    [
        (1.5, 0.5, True),  # distance 0.5 == tolerance: within
        (1.5, 0.4999, False),  # just over
        (1.5, 0.5001, True),
        (1.25, 0.25, True),
        (1.25, 0.2499, False),
        (1.0, 1e-9, True),  # an exact hit
    ],
)
def test_tolerance_boundary(
    watchlist: Watchlist, scale: float, tolerance: float, matched: bool
) -> None:
    names, dist = watchlist.match(axis(0, scale)[None], tolerance)
    assert names == (["alice"] if matched else [None])
    # the nearest distance is reported whether or not the face is named
    np.testing.assert_allclose(dist, [scale - 1.0], atol=1e-6)


def test_match_names_some_rows_and_not_others(watchlist: Watchlist) -> None:
    queries = np.stack([axis(0, 1.1), axis(7), axis(1, 0.8)])
    names, dist = watchlist.match(queries, 0.6)
    assert names == ["alice", None, "bob"]
    np.testing.assert_allclose(dist, [0.1, np.sqrt(2), 0.2], atol=1e-6)


def test_empty_watchlist_gives_none_and_nan() -> None:
    wl = Watchlist()
    assert len(wl) == 0
    assert wl.names == []
    names, dist = wl.match(np.stack([axis(0), axis(1)]), 0.6)
    assert names == [None, None]
    assert dist.shape == (2,)
    assert np.isnan(dist).all()


def test_no_queries(watchlist: Watchlist) -> None:
    names, dist = watchlist.match(np.zeros((0, DIM), np.float32), 0.6)
    assert names == []
    assert dist.shape == (0,)


def test_zero_dim_queries_are_unmatched(watchlist: Watchlist) -> None:
    names, dist = watchlist.match(np.zeros((3, 0), np.float32), 0.6)
    assert names == [None, None, None]
    assert np.isnan(dist).all()


def test_nan_rows_stay_unmatched(watchlist: Watchlist) -> None:
    partial = axis(0)
    partial[3] = np.nan
    queries = np.stack([np.full(DIM, np.nan, np.float32), axis(0), partial])
    names, dist = watchlist.match(queries, 2.0)
    assert names == [None, "alice", None]
    assert np.isnan(dist[0]) and np.isnan(dist[2])
    assert dist[1] == pytest.approx(0.0, abs=1e-6)
    names, _ = watchlist.nearest(queries)
    assert names == [None, "alice", None]


def test_upsert_adds_and_replaces(watchlist: Watchlist) -> None:
    v0 = watchlist.version
    watchlist.upsert(person("carol", axis(9)))
    assert watchlist.names == ["alice", "bob", "carol"]
    assert len(watchlist) == 3
    assert watchlist.version > v0
    assert watchlist.match(axis(9)[None], 0.1)[0] == ["carol"]
    # re-enrolling alice elsewhere replaces her old references
    watchlist.upsert(person("alice", axis(20)))
    assert len(watchlist) == 3
    assert watchlist.match(axis(0)[None], 0.1)[0] == [None]
    assert watchlist.match(axis(20)[None], 0.1)[0] == ["alice"]


def test_remove(watchlist: Watchlist) -> None:
    v0 = watchlist.version
    assert watchlist.remove("bob") is True
    assert watchlist.names == ["alice"]
    assert watchlist.version > v0
    assert watchlist.match(axis(1)[None], 0.5)[0] == [None]
    v1 = watchlist.version
    assert watchlist.remove("bob") is False
    assert watchlist.version == v1
    assert watchlist.remove("alice") is True
    names, dist = watchlist.match(axis(0)[None], 0.5)
    assert names == [None]
    assert np.isnan(dist).all()


def test_replace_all(watchlist: Watchlist) -> None:
    watchlist.replace_all([person("dave", axis(30)), person("erin", axis(31))])
    assert watchlist.names == ["dave", "erin"]
    queries = np.stack([axis(0), axis(30), axis(31)])
    assert watchlist.match(queries, 0.1)[0] == [None, "dave", "erin"]
    watchlist.replace_all([])
    assert len(watchlist) == 0


def test_later_duplicate_in_the_constructor_wins() -> None:
    wl = Watchlist([person("x", axis(0)), person("x", axis(1))])
    assert len(wl) == 1
    assert wl.match(np.stack([axis(0), axis(1)]), 0.1)[0] == [None, "x"]


def test_updates_are_logged(watchlist: Watchlist, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sauron.match.watchlist"):
        watchlist.upsert(person("carol", axis(9), axis(10)))
        watchlist.remove("carol")
    assert "carol enrolled with 2 embedding(s)" in caplog.text
    assert "carol removed" in caplog.text


def test_ten_thousand_people_the_right_one_is_found() -> None:
    rng = np.random.default_rng(2024)
    n = 10_000
    refs = rng.normal(size=(n, DIM)).astype(np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)  # random unit vectors: ~1.41 apart
    wl = Watchlist(Person(name=f"p{i:05d}", embeddings=refs[i : i + 1]) for i in range(n))
    assert len(wl) == n
    picks = rng.choice(n, size=300, replace=False)
    noise = rng.normal(size=(len(picks), DIM)).astype(np.float32)
    noise *= 0.3 / np.linalg.norm(noise, axis=1, keepdims=True)  # move each 0.3 away
    queries = refs[picks] + noise
    names, dist = wl.match(queries, 0.6)
    assert names == [f"p{i:05d}" for i in picks]
    np.testing.assert_allclose(dist, 0.3, atol=1e-3)
    # strangers (fresh random unit vectors) match nobody at the same tolerance
    strangers = rng.normal(size=(100, DIM)).astype(np.float32)
    strangers /= np.linalg.norm(strangers, axis=1, keepdims=True)
    names, dist = wl.match(strangers, 0.6)
    assert names == [None] * 100
    assert (dist > 0.6).all()


def test_a_negative_example_withholds_the_name_from_faces_nearer_to_it() -> None:
    ref, wrong = np.zeros((1, 128), np.float32), np.full((1, 128), 0.04, np.float32)
    near_wrong = wrong + 0.005  # 0.50 from the reference, 0.06 from the negative
    halfway = np.full((1, 128), 0.015, np.float32)  # 0.17 from ref, 0.28 from the negative
    plain = Watchlist([Person("ann", ref)])
    assert plain.match(near_wrong, 0.6)[0] == ["ann"]
    wl = Watchlist([Person("ann", ref, wrong)])
    assert wl.match(near_wrong, 0.6)[0] == [None]
    assert wl.match(halfway, 0.6)[0] == ["ann"]
    wl.upsert(Person("ann", ref))  # the corrections deleted
    assert wl.match(near_wrong, 0.6)[0] == ["ann"]
