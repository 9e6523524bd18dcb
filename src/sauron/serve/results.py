"""Result sinks: the JSON-lines results file and the sightings log.

The results file is the stable contract for scripts (docs/results.md): one JSON object
per processed frame. Frames can arrive out of order (frame partitioning) or twice
(at-least-once delivery after a worker died); the writer emits each (camera, frame)
once, in frame order per camera. A frame that will never come is not waited for: it is
marked skipped by whoever dropped it (:meth:`ResultsWriter.skip`), and failing that the
writer gives up on a gap once a later frame has waited ``max_wait_s`` (live cameras) or
once more than ``reorder_window`` frames wait behind it. Every line is flushed to the file
as it is written, so a script following the file sees each result at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

from sauron.types import Result

log = logging.getLogger(__name__)

MAX_WAIT_S = 1.0
_LOG_EVERY_S = 10.0
#: Per camera, the frame numbers passed over that are remembered, so that one arriving
#: after all is told apart from a repeat (``late``, not ``duplicates``).
PASSED_MEMORY = 4096


class ResultsWriter:
    """Writes results in frame order per camera, each (camera, frame) once.

    ``max_wait_s``: a camera's frames wait at most this long for an earlier frame that
    has not come (dropped upstream without being marked); ``None`` waits only on the
    ``reorder_window`` bound. Cameras in ``patient`` (files read as fast as possible, whose
    frames are never dropped) wait on the window bound alone. A background thread applies
    the time bound while no new result arrives; :meth:`close` stops it.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        reorder_window: int = 256,
        max_wait_s: float | None = MAX_WAIT_S,
        patient: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._fh: IO[str] | None = path.open("w") if path else None
        self.reorder_window = reorder_window
        self.max_wait_s = max_wait_s
        self.patient = frozenset(patient)
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._held: dict[str, dict[int, dict[str, Any] | None]] = {}
        self._seen: dict[str, set[int]] = {}
        # camera -> since when its held frames wait at a gap (cleared once it is filled)
        self._blocked: dict[str, float] = {}
        self.written: Counter[str] = Counter()
        self.duplicates = 0
        #: frames that came after the writer had passed over their place: not written
        self.late = 0
        self._passed: dict[str, dict[int, None]] = {}  # camera -> numbers passed over
        self.named: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()  # marked skipped by the stage that dropped them
        self.given_up: Counter[str] = Counter()  # never arrived, passed over by the writer
        self._logged_at = self._late_logged_at = -1e9
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        if max_wait_s is not None:
            self._ticker = threading.Thread(
                target=self._tick, args=(min(0.2, max_wait_s / 4),), name="results", daemon=True
            )
            self._ticker.start()

    def add(self, result: Result) -> bool:
        """Queue one result; False if that frame was already seen (a duplicate) or its
        place was passed over before it came (late)."""
        cam, num = result.frame.camera, result.frame.number
        with self._lock:
            seen = self._seen.setdefault(cam, set())
            passed = self._passed.get(cam, {})
            if num in passed and num not in seen:
                del passed[num]
                self.late += 1
                now = self._clock()
                if now - self._late_logged_at >= _LOG_EVERY_S:
                    self._late_logged_at = now
                    log.warning(
                        "results: camera %s frame %d came after the file had moved past "
                        "it, not written (%d such frame(s) so far)", cam, num, self.late,
                    )  # fmt: skip
                return False
            if num in seen or num < self._next.get(cam, 0):
                self.duplicates += 1
                return False
            seen.add(num)
            held = self._held.setdefault(cam, {})
            held[num] = result.to_json()
            self._drain(cam, limit=self.reorder_window)
            return True

    def skip(self, camera: str, number: int) -> None:
        """A frame that will never come (dropped on purpose, e.g. stale): the frames after
        it are written without waiting for it, and it counts in :meth:`count`."""
        with self._lock:
            seen = self._seen.setdefault(camera, set())
            if number in seen or number < self._next.get(camera, 0):
                return
            seen.add(number)
            self.skipped[camera] += 1
            self._held.setdefault(camera, {})[number] = None
            self._drain(camera, limit=self.reorder_window)

    def flush_due(self) -> None:
        """Pass over the gaps that later frames have waited at for ``max_wait_s``."""
        if self.max_wait_s is None:
            return
        with self._lock:
            now = self._clock()
            for cam, since in list(self._blocked.items()):
                if now - since >= self.max_wait_s:
                    self._drain(cam, limit=self.reorder_window, give_up=True)

    def _tick(self, period: float) -> None:
        while not self._closed.wait(period):
            self.flush_due()

    def _drain(self, cam: str, *, limit: int, give_up: bool = False) -> None:
        """Emit the camera's frames in order; pass over a gap once more than ``limit``
        wait behind it, or (``give_up``) at once."""
        held = self._held[cam]
        nxt = self._next.get(cam, 0)
        emitted = False
        while held:
            if nxt not in held:
                if len(held) <= limit and not give_up:
                    break
                skipped = min(held)
                self._pass_over(cam, nxt, skipped, timed=give_up)
                give_up = False  # one gap at a time: the next one gets its own wait
                nxt = skipped
            record = held.pop(nxt)
            if record is not None:
                self._emit(record)
                emitted = True
            self._seen[cam].discard(nxt)
            nxt += 1
        self._next[cam] = nxt
        if held and cam not in self.patient:
            if cam not in self._blocked or emitted:
                self._blocked[cam] = self._clock()
        else:
            self._blocked.pop(cam, None)
        if emitted and self._fh is not None:
            self._fh.flush()

    def _pass_over(self, cam: str, first: int, upto: int, *, timed: bool) -> None:
        if not self._closed.is_set():
            self.given_up[cam] += upto - first
        passed = self._passed.setdefault(cam, {})
        for number in range(max(first, upto - PASSED_MEMORY), upto):
            passed[number] = None
        while len(passed) > PASSED_MEMORY:  # the oldest go first (dicts keep order)
            del passed[next(iter(passed))]
        if not timed:
            log.warning(
                "results: camera %s frames %d..%d never arrived, skipping", cam, first, upto - 1
            )
            return
        now = self._clock()
        if now - self._logged_at >= _LOG_EVERY_S:  # dropped frames of live cameras: rarely
            self._logged_at = now
            log.info(
                "results: camera %s frames %d..%d not come after %.1f s, written past them "
                "(%d frame(s) of all cameras so far)",
                cam, first, upto - 1, self.max_wait_s, sum(self.given_up.values()),
            )  # fmt: skip

    def _emit(self, record: dict[str, Any]) -> None:
        self.written[record["camera"]] += 1
        for face in record["faces"]:
            if face["person"]:
                self.named[face["person"]] += 1
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    def count(self, camera: str) -> int:
        """Frames of the camera accounted for: written, waiting for an earlier one,
        skipped, or passed over."""
        with self._lock:
            done = self.written[camera] + self.skipped[camera] + self.given_up[camera]
            return done + sum(r is not None for r in self._held.get(camera, {}).values())

    def close(self) -> None:
        self._closed.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(5)
        with self._lock:
            for cam in list(self._held):
                self._drain(cam, limit=0)
            if self._fh is not None:
                self._fh.close()
                self._fh = None
