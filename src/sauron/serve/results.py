"""Result sinks: the JSON-lines results file and the sightings log.

The results file is the stable contract for scripts (docs/results.md): one JSON object
per processed frame. Frames can arrive out of order (frame partitioning) or twice
(at-least-once delivery after a worker died); the writer emits each (camera, frame)
once, in frame order per camera, holding back at most ``reorder_window`` frames.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

from sauron.types import Result

log = logging.getLogger(__name__)


class ResultsWriter:
    def __init__(self, path: Path | None, *, reorder_window: int = 256) -> None:
        self.path = path
        self._fh: IO[str] | None = path.open("w") if path else None
        self.reorder_window = reorder_window
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._held: dict[str, dict[int, dict[str, Any] | None]] = {}
        self._seen: dict[str, set[int]] = {}
        self.written: Counter[str] = Counter()
        self.duplicates = 0
        self.named: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def add(self, result: Result) -> bool:
        """Queue one result; False if that frame was already seen (a duplicate)."""
        cam, num = result.frame.camera, result.frame.number
        with self._lock:
            seen = self._seen.setdefault(cam, set())
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

    def _drain(self, cam: str, *, limit: int) -> None:
        """Emit the camera's frames in order; skip a gap once more than ``limit`` wait."""
        held = self._held[cam]
        nxt = self._next.get(cam, 0)
        while held:
            if nxt not in held:
                if len(held) <= limit:
                    break
                skipped = min(held)
                log.warning(
                    "results: camera %s frames %d..%d never arrived, skipping",
                    cam,
                    nxt,
                    skipped - 1,
                )
                nxt = skipped
            record = held.pop(nxt)
            if record is not None:
                self._emit(record)
            self._seen[cam].discard(nxt)
            nxt += 1
        self._next[cam] = nxt

    def _emit(self, record: dict[str, Any]) -> None:
        self.written[record["camera"]] += 1
        for face in record["faces"]:
            if face["person"]:
                self.named[face["person"]] += 1
        if self._fh is not None:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")

    def count(self, camera: str) -> int:
        """Frames of the camera accounted for: written, waiting for an earlier one, or
        skipped."""
        with self._lock:
            written = self.written[camera] + self.skipped[camera]
            return written + sum(r is not None for r in self._held.get(camera, {}).values())

    def close(self) -> None:
        with self._lock:
            for cam in list(self._held):
                self._drain(cam, limit=0)
            if self._fh is not None:
                self._fh.close()
                self._fh = None
