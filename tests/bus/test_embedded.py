"""The embedded bus stays live like the Kafka path: a live camera's frames that would be
detected too late are dropped as stale and counted, never delivered seconds late."""

from __future__ import annotations

from pathlib import Path

import pytest

from .overload import FRAMES, check_stayed_live, overload


@pytest.mark.timeout(240)
def test_an_overloaded_embedded_run_drops_stale_frames_instead_of_falling_behind(
    tmp_path: Path,
) -> None:
    """Live cameras (files played in real time) never wait for the process: their frames
    that it could not finish in time are dropped as stale (and, when its queue is full,
    the oldest waiting), counted and skipped; none comes out seconds late."""
    got = overload(tmp_path, realtime=True)
    check_stayed_live(got)
    assert got.summary.dropped >= got.summary.dropped_stale
    # every frame handed to the bus comes out or is marked skipped, so none is written
    # past while it is still being detected, however slow the machine
    assert got.summary.lost == got.summary.late == got.summary.unfinished == 0
    assert len(got.records) + got.summary.dropped == FRAMES * got.cameras
    # without the age limit, the last frames came out about 10 s after their capture
    late = max(r["latency_ms"] for r in got.records)
    assert late < 5000, f"a frame came out {late:.0f} ms after its capture"


@pytest.mark.timeout(240)
def test_files_read_as_fast_as_possible_are_never_dropped(tmp_path: Path) -> None:
    """The same overload from cameras that are files read as fast as possible: they wait
    for room, and every frame comes out."""
    got = overload(tmp_path, realtime=False)
    assert got.summary.dropped == got.summary.dropped_stale == 0
    assert len(got.records) == sum(got.summary.frames_in.values()) == FRAMES * got.cameras
