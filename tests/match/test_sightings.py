"""One sighting per track: when it is first seen and when it is first (or newly) named."""

from __future__ import annotations

from sauron.match.stage import TrackSightings
from sauron.types import Sighting


def ev(track: int, person: str | None, camera: str = "cam", frame: int = 0) -> Sighting:
    return Sighting(camera, frame, float(frame), track, person, None, (0, 0, 9, 9), 0)


def test_a_track_is_sighted_once_while_its_name_stays() -> None:
    keep = TrackSightings()
    assert keep([ev(7, None, frame=0)]) == [ev(7, None, frame=0)]
    assert keep([ev(7, None, frame=1)]) == []
    named = ev(7, "ann", frame=2)
    assert keep([named]) == [named]  # first named
    assert keep([ev(7, "ann", frame=3)]) == []
    assert keep([ev(7, None, frame=4)]) == []  # a doubtful frame is no news
    assert keep([ev(7, "ann", frame=5)]) == []
    other = ev(7, "bob", frame=6)
    assert keep([other]) == [other]  # named as someone else


def test_tracks_are_per_camera_and_untracked_faces_every_frame() -> None:
    keep = TrackSightings()
    assert len(keep([ev(1, "ann", "a"), ev(1, "ann", "b")])) == 2
    untracked = [ev(-1, None), ev(-1, "ann")]
    assert keep(untracked) == untracked
    assert keep(untracked) == untracked


def test_memory_is_bounded_and_forgets_the_oldest() -> None:
    keep = TrackSightings(capacity=3)
    for t in range(5):
        keep([ev(t, None)])
    assert keep([ev(4, None)]) == []  # recent: remembered
    assert keep([ev(0, None)]) == [ev(0, None)]  # forgotten: sighted again
