"""The watchlist in memory: enrolled people and a vectorised nearest-person search."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import numpy as np

from sauron.codec import Person

log = logging.getLogger(__name__)


class Watchlist:
    """Enrolled people; safe to update from one thread while another matches.

    Matching takes the nearest reference embedding over all people (Euclidean distance,
    as dlib's model is trained for) and names the face only when that distance is within
    the tolerance. The reference matrix is rebuilt on change, so a lookup is one
    matrix-vector product: 10,000 people cost a fraction of a millisecond per face.

    A person's negative examples (faces an operator said are not them) are consulted too:
    a face nearer to one of them than to the person's nearest reference is not named
    after that person, so the same face is not given the same wrong name again.
    """

    def __init__(self, people: Iterable[Person] = ()) -> None:
        self._lock = threading.Lock()
        self._people: dict[str, np.ndarray] = {}
        self._negatives: dict[str, np.ndarray] = {}
        self._matrix = np.zeros((0, 128), np.float32)
        self._sq_norms = np.zeros(0, np.float32)
        self._owner: list[str] = []
        self.version = 0
        for p in people:
            self._set(p)
        self._rebuild()

    def _set(self, p: Person) -> None:
        self._people[p.name] = np.asarray(p.embeddings, np.float32)
        if len(p.negatives):
            self._negatives[p.name] = np.asarray(p.negatives, np.float32)
        else:
            self._negatives.pop(p.name, None)

    def _rebuild(self) -> None:
        names = sorted(self._people)
        mats = [self._people[n] for n in names]
        self._matrix = np.ascontiguousarray(
            np.concatenate(mats) if mats else np.zeros((0, 128), np.float32)
        )
        self._sq_norms = np.einsum("ij,ij->i", self._matrix, self._matrix)
        self._owner = [n for n, m in zip(names, mats, strict=True) for _ in range(len(m))]
        self._owner_arr = np.array(self._owner, dtype=object)
        self.version += 1

    def upsert(self, person: Person) -> None:
        with self._lock:
            self._set(person)
            self._rebuild()
        log.info("watchlist: %s enrolled with %d embedding(s)", person.name, len(person.embeddings))

    def remove(self, name: str) -> bool:
        with self._lock:
            found = self._people.pop(name, None) is not None
            self._negatives.pop(name, None)
            if found:
                self._rebuild()
        if found:
            log.info("watchlist: %s removed", name)
        return found

    def apply(self, upserts: Iterable[Person], removals: Iterable[str] = ()) -> None:
        """Several enrollments and removals with one rebuild."""
        with self._lock:
            for name in removals:
                self._people.pop(name, None)
                self._negatives.pop(name, None)
            for p in upserts:
                self._set(p)
            self._rebuild()

    def replace_all(self, people: Iterable[Person]) -> None:
        with self._lock:
            self._people, self._negatives = {}, {}
            for p in people:
                self._set(p)
            self._rebuild()

    @property
    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._people)

    def __len__(self) -> int:
        return len(self._people)

    def nearest(self, embeddings: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """Nearest enrolled person of each row, and its distance (NaN if nobody enrolled)."""
        q = np.asarray(embeddings, np.float32)
        n = len(q)
        with self._lock:
            matrix, sq, owner = self._matrix, self._sq_norms, self._owner_arr
        if n == 0 or len(matrix) == 0 or q.shape[1] != matrix.shape[1]:
            return [None] * n, np.full(n, np.nan, np.float32)
        d2 = sq[None, :] - 2.0 * (q @ matrix.T) + np.einsum("ij,ij->i", q, q)[:, None]
        best = np.argmin(d2, axis=1)
        dist = np.sqrt(np.clip(d2[np.arange(n), best], 0.0, None)).astype(np.float32)
        # Rows with NaN embeddings (faces not embedded this frame) stay unmatched.
        valid = np.isfinite(dist)
        names: list[str | None] = [
            owner[b] if ok else None for b, ok in zip(best.tolist(), valid.tolist(), strict=True)
        ]
        return names, dist

    def match(
        self, embeddings: np.ndarray, tolerance: float
    ) -> tuple[list[str | None], np.ndarray]:
        """Names within ``tolerance`` (else None), plus the nearest distance of every row.
        A name is withheld from a face nearer to one of that person's negative examples
        than to the person."""
        names, dist = self.nearest(embeddings)
        out = [n if (d <= tolerance) else None for n, d in zip(names, dist, strict=True)]
        with self._lock:
            negatives = dict(self._negatives)
        if negatives:
            q = np.asarray(embeddings, np.float32)
            for i, name in enumerate(out):
                neg = negatives.get(name) if name is not None else None
                if neg is not None and float(np.linalg.norm(neg - q[i], axis=1).min()) < dist[i]:
                    out[i] = None
        return out, dist
