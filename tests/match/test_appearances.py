"""Appearances: sightings of one person on one camera grouped into runs split by gaps."""

from __future__ import annotations

from sauron.match.appearances import AppearanceTracker, alert_event


def test_sightings_within_the_gap_extend_one_appearance() -> None:
    tracker = AppearanceTracker(gap_s=3.0)
    first, new = tracker.observe("door", "ann", 10.0, 0.41)
    assert new and first.span.frames == 1 and not first.dirty
    again, new = tracker.observe("door", "ann", 12.5, 0.35)
    assert not new and again is first
    span = first.span
    assert (span.frames, span.last_seen_at, span.distance) == (2, 12.5, 0.35)
    # a later, worse match keeps the best distance; an out-of-order frame keeps the newest time
    tracker.observe("door", "ann", 11.0, 0.5)
    span = first.span
    assert (span.frames, span.last_seen_at, span.distance) == (3, 12.5, 0.35)
    assert (span.person, span.camera, span.started_at) == ("ann", "door", 10.0)


def test_a_gap_longer_than_the_limit_starts_a_new_appearance() -> None:
    tracker = AppearanceTracker(gap_s=3.0)
    first, _ = tracker.observe("door", "ann", 10.0, 0.4)
    second, new = tracker.observe("door", "ann", 13.5, 0.4)
    assert new and second is not first and second.span.started_at == 13.5


def test_cameras_and_people_are_tracked_apart() -> None:
    tracker = AppearanceTracker(gap_s=3.0)
    assert tracker.observe("door", "ann", 1.0, 0.4)[1]
    assert tracker.observe("yard", "ann", 1.0, 0.4)[1]
    assert tracker.observe("door", "bob", 1.0, 0.4)[1]
    assert not tracker.observe("door", "ann", 2.0, 0.4)[1]


def test_dirty_lists_each_updated_appearance_once() -> None:
    tracker = AppearanceTracker(gap_s=3.0)
    app, _ = tracker.observe("door", "ann", 1.0, 0.4)
    assert tracker.dirty() == []  # a new appearance is stored as it starts
    tracker.observe("door", "ann", 2.0, 0.4)
    assert tracker.dirty() == [app]
    assert tracker.dirty() == []


def test_idle_appearances_are_forgotten() -> None:
    tracker = AppearanceTracker(gap_s=1.0)
    old, _ = tracker.observe("door", "ann", 0.0, 0.4)
    tracker.close_idle(5.0)  # within 10 gaps: kept
    assert tracker.observe("door", "ann", 0.5, 0.4)[0] is old
    tracker.dirty()
    tracker.close_idle(20.0)
    assert tracker.observe("door", "ann", 0.6, 0.4)[1]  # forgotten: a new one


def test_alert_event_fields() -> None:
    assert alert_event(7, "ann", "door", 12.0, 0.412345, frames=3) == {
        "id": 7,
        "kind": "person",
        "person": "ann",
        "camera": "door",
        "ts": 12.0,
        "distance": 0.4123,
        "frames": 3,
        "snapshot_url": "/api/alerts/7/snapshot.jpg",
    }
