"""The results file: once per frame, in frame order per camera, gaps skipped in time
(frames marked dropped, or a later frame waiting a second at most)."""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sauron.serve.results import ResultsWriter
from sauron.types import NUM_LANDMARKS, Detections, Frame, Result


def result(camera: str, number: int, person: str | None = None) -> Result:
    det = Detections(
        xyxy=np.array([[number, 1, number + 10, 11]], np.int32),
        confidence=np.ones(1, np.float32),
        landmarks=np.zeros((1, NUM_LANDMARKS, 2), np.float32),
        embeddings=np.zeros((1, 128), np.float32),
        names=(person,),
        distances=np.array([0.5 if person else np.nan], np.float32),
    )
    frame = Frame(camera=camera, number=number, captured_at=100.0 + number, jpeg=b"")
    return Result(frame=frame, detections=det, processed_at=100.5 + number)


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def order(records: list[dict[str, Any]], camera: str) -> list[int]:
    return [r["frame"] for r in records if r["camera"] == camera]


def test_records_are_the_results_contract(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path)
    r = result("door", 0, "alice")
    assert writer.add(r) is True
    writer.close()
    assert read(path) == [r.to_json()]
    assert path.read_text().endswith("\n")
    assert ": " not in path.read_text()  # compact separators


def test_shuffled_input_comes_out_in_order_per_camera(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=256, max_wait_s=None)
    items = [result(cam, n) for cam in ("a", "b", "c") for n in range(60)]
    random.Random(5).shuffle(items)
    assert all(writer.add(r) for r in items)
    # every frame arrived, so nothing is held back even before close()
    assert dict(writer.written) == {"a": 60, "b": 60, "c": 60}
    assert writer.count("a") == 60
    writer.close()
    records = read(path)
    assert len(records) == 180
    for cam in ("a", "b", "c"):
        assert order(records, cam) == list(range(60))
    assert writer.duplicates == 0


def test_frames_wait_for_the_missing_one(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "r.jsonl", reorder_window=10, max_wait_s=None)
    for n in (1, 2, 3):
        writer.add(result("a", n))
    assert writer.written["a"] == 0
    assert writer.count("a") == 3  # held ones count too
    writer.add(result("a", 0))
    assert writer.written["a"] == 4
    writer.close()


def test_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=10, max_wait_s=None)
    assert writer.add(result("a", 0)) is True
    assert writer.add(result("a", 2)) is True
    assert writer.add(result("a", 0)) is False  # already written
    assert writer.add(result("a", 2)) is False  # still held
    assert writer.add(result("b", 0)) is True  # same number, another camera
    assert writer.add(result("a", 1)) is True
    assert writer.add(result("a", 1)) is False
    assert writer.duplicates == 3
    writer.close()
    records = read(path)
    assert order(records, "a") == [0, 1, 2]
    assert order(records, "b") == [0]


def test_a_gap_is_skipped_once_the_window_overflows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=3, max_wait_s=None)
    for n in (0, 1, 3, 4, 5):
        writer.add(result("a", n))
    assert writer.written["a"] == 2  # 3, 4, 5 wait for 2: the window is not yet exceeded
    with caplog.at_level(logging.WARNING, logger="sauron.serve.results"):
        writer.add(result("a", 6))
    assert writer.written["a"] == 6  # frame 2 given up
    assert "camera a frames 2..2 never arrived, skipping" in caplog.text
    # the frame that finally arrives is too late: dropped (and counted) rather than reordered
    assert writer.add(result("a", 2)) is False
    assert (writer.late, writer.duplicates) == (1, 0)
    writer.add(result("a", 7))
    writer.close()
    assert order(read(path), "a") == [0, 1, 3, 4, 5, 6, 7]


def test_a_missing_first_frame_is_skipped_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=2, max_wait_s=None)
    with caplog.at_level(logging.WARNING, logger="sauron.serve.results"):
        for n in (10, 11, 12):
            writer.add(result("a", n))
    assert "camera a frames 0..9 never arrived" in caplog.text
    writer.close()
    assert order(read(path), "a") == [10, 11, 12]


def test_close_flushes_everything_in_order(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=100, max_wait_s=None)
    for cam, n in [("a", 7), ("a", 2), ("b", 5), ("a", 0), ("b", 1)]:
        writer.add(result(cam, n))
    assert writer.written["a"] == 1
    assert writer.written["b"] == 0
    writer.close()
    records = read(path)
    assert order(records, "a") == [0, 2, 7]
    assert order(records, "b") == [1, 5]
    assert dict(writer.written) == {"a": 3, "b": 2}
    assert writer.count("a") == 3
    writer.close()  # closing twice is harmless
    assert len(read(path)) == 5


def test_named_people_are_counted(tmp_path: Path) -> None:
    writer = ResultsWriter(None)
    for n, person in enumerate(["alice", None, "alice", "bob"]):
        writer.add(result("a", n, person))
    writer.close()
    assert dict(writer.named) == {"alice": 2, "bob": 1}
    assert writer.written["a"] == 4


def test_without_a_file_only_counts() -> None:
    writer = ResultsWriter(None, reorder_window=5, max_wait_s=None)
    for n in (2, 0, 1, 1):
        writer.add(result("x", n))
    assert writer.written["x"] == 3
    assert writer.duplicates == 1
    writer.close()


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.permutations(range(40)), st.lists(st.integers(0, 39), max_size=15), st.integers(1, 50))
def test_property_each_frame_once_and_sorted(
    perm: list[int], dupes: list[int], window: int
) -> None:
    """Whatever the order and repeats: each frame once, ascending, and none lost if the
    window covers the disorder."""
    arrivals = list(perm)
    for i, n in enumerate(dupes):
        arrivals.insert((i * 7) % (len(arrivals) + 1), n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.jsonl"
        writer = ResultsWriter(path, reorder_window=window, max_wait_s=None)
        accepted = sum(writer.add(result("cam", n)) for n in arrivals)
        writer.close()
        frames = order(read(path), "cam")
    assert frames == sorted(set(frames))
    assert accepted == len(frames)
    assert accepted + writer.duplicates + writer.late == len(arrivals)
    if window >= 40:
        assert frames == list(range(40))


def test_a_skipped_frame_lets_the_next_ones_out_and_counts(tmp_path: Path) -> None:
    """A frame dropped on purpose (stale) is never waited for: the frames after it are
    written at once, and it counts as accounted for."""
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, reorder_window=10, max_wait_s=None)
    writer.add(result("a", 0))
    writer.add(result("a", 2))
    assert writer.written["a"] == 1  # frame 2 waits for frame 1
    writer.skip("a", 1)
    assert writer.written["a"] == 2
    assert writer.skipped["a"] == 1
    assert writer.count("a") == 3
    writer.skip("a", 1)  # told twice: counted once
    writer.skip("a", 3)
    assert writer.add(result("a", 3)) is False  # a skipped frame that turns up anyway
    writer.add(result("a", 4))
    writer.close()
    assert order(read(path), "a") == [0, 2, 4]
    assert writer.skipped["a"] == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_frame_dropped_unmarked_is_waited_for_at_most_max_wait(tmp_path: Path) -> None:
    """A live camera's frame dropped upstream without being marked (e.g. in a stream's
    opening burst) holds the later frames back for ``max_wait_s``, not for 256 frames."""
    path = tmp_path / "results.jsonl"
    clock = FakeClock()
    writer = ResultsWriter(path, max_wait_s=1.0, clock=clock)
    writer.add(result("door", 0))
    for n in (2, 3, 4):  # frame 1 never comes
        writer.add(result("door", n))
    writer.add(result("desk", 0))
    clock.now += 0.5
    writer.flush_due()
    assert order(read(path), "door") == [0]  # still within the wait
    clock.now += 0.6
    writer.flush_due()
    # written before close, in order, without frame 1; the other camera was not held
    assert order(read(path), "door") == [0, 2, 3, 4]
    assert order(read(path), "desk") == [0]
    assert writer.given_up["door"] == 1
    assert writer.count("door") == 5  # the frame passed over is accounted for
    # a later gap gets its own wait, counted from when the frames stopped at it
    writer.add(result("door", 6))
    clock.now += 0.9
    writer.flush_due()
    assert writer.written["door"] == 4
    clock.now += 0.2
    writer.flush_due()
    assert writer.written["door"] == 5
    assert writer.add(result("door", 1)) is False  # too late: not reordered into the file
    # counted as late, not as a repeat; a second copy of it is a repeat
    assert (writer.late, writer.duplicates) == (1, 0)
    assert writer.add(result("door", 1)) is False
    assert writer.add(result("door", 2)) is False  # written already: a repeat
    assert (writer.late, writer.duplicates) == (1, 2)
    writer.close()
    assert order(read(path), "door") == [0, 2, 3, 4, 6]


def test_patient_cameras_wait_on_the_window_only(tmp_path: Path) -> None:
    """Files read as fast as possible are never dropped: their frames wait for a late one
    however long it takes (up to the reorder window)."""
    path = tmp_path / "results.jsonl"
    clock = FakeClock()
    writer = ResultsWriter(path, max_wait_s=1.0, patient={"archive"}, clock=clock)
    for n in (0, 2, 3):
        writer.add(result("archive", n))
    clock.now += 60
    writer.flush_due()
    assert order(read(path), "archive") == [0]
    writer.add(result("archive", 1))
    writer.close()
    assert order(read(path), "archive") == [0, 1, 2, 3]


def test_the_background_thread_writes_past_a_gap_while_nothing_arrives(tmp_path: Path) -> None:
    """With the real clock, frames held at a gap reach the file with no later result and
    no close(): a script following the file sees them."""
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, max_wait_s=0.2)
    for n in (1, 2):  # frame 0 was dropped before it reached the bus
        writer.add(result("door", n))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and writer.written["door"] < 2:
        time.sleep(0.05)
    assert order(read(path), "door") == [1, 2]  # flushed to the file, not just buffered
    writer.close()


def test_every_line_is_in_the_file_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    writer = ResultsWriter(path, max_wait_s=None)
    writer.add(result("door", 0))
    assert order(read(path), "door") == [0]
    writer.close()
