"""Search by photo: exact nearest neighbours over every stored face, memory-mapped.

Why brute force: a query is one pass of a matrix-vector product over an (N, 128) float32
matrix read from a memory-mapped file, in chunks of 64k rows. Measured on one core of
the 2-core dev machine, 1,000,000 faces take about 30-40 ms a query (see
docs/benchmarks.md, "Search by photo"), well under the 100 ms target, and the answer is
exact: every sighting within the radius is found, with none of the recall loss of a
coarse quantizer (IVF) that a "find every sighting of this person" query cannot afford.
Past ~3 million faces per server, or for a smaller memory footprint, an IVF layer over
these same files is the next step.

Files in the index folder (all append-only between compactions)::

    vectors.f32   N x 128 float32, row i = the face of sighting ids[i]
    norms.f32     N float32, squared L2 norm of each row (saves a pass per query)
    ids.i64       N int64 sighting ids, increasing
    meta.json     {"instance_id": the store it mirrors, "cutoff": lowest live id}

The database stays the source of truth: :meth:`FaceIndex.sync` appends what was stored
since the last sync, retention raises the cutoff (rows below it are skipped, and
rewritten away once they are a quarter of the file), and an index built from another
database is discarded.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sauron.store.db import Store
from sauron.types import EMBEDDING_DIM

log = logging.getLogger(__name__)

CHUNK_ROWS = 65536
# PostgreSQL sequences can commit out of id order across concurrent writers: re-read
# this many ids below the last one synced and add any that appeared late.
_LATE_WINDOW = 512


@dataclass(frozen=True)
class Hit:
    sighting_id: int
    distance: float


class FaceIndex:
    """Exact radius search over sighting embeddings, backed by files in ``directory``."""

    def __init__(self, directory: Path, dim: int = EMBEDDING_DIM) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._lock = threading.RLock()
        self._meta = self._read_meta()
        self._n = self._recover()
        self._maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._mapped_n = -1
        self._recent: deque[int] = deque(maxlen=4 * _LATE_WINDOW)
        self._recent_set: set[int] = set()
        if self._n:
            for i in self._ids_view()[-4 * _LATE_WINDOW :].tolist():
                self._remember(int(i))

    # --- files --------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.dir / name

    def _read_meta(self) -> dict[str, object]:
        try:
            data = json.loads(self._path("meta.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self) -> None:
        tmp = self._path("meta.json.tmp")
        tmp.write_text(json.dumps(self._meta))
        os.replace(tmp, self._path("meta.json"))

    def _recover(self) -> int:
        """Row count all three files agree on; a torn append (a crash) is cut off."""
        sizes = {
            name: self._path(name).stat().st_size if self._path(name).exists() else 0
            for name in ("vectors.f32", "norms.f32", "ids.i64")
        }
        n = min(
            sizes["vectors.f32"] // (4 * self.dim), sizes["norms.f32"] // 4, sizes["ids.i64"] // 8
        )
        for name, width in (("vectors.f32", 4 * self.dim), ("norms.f32", 4), ("ids.i64", 8)):
            with open(self._path(name), "ab") as fh:
                if sizes[name] != n * width:
                    fh.truncate(n * width)
        return n

    def _ids_view(self) -> np.ndarray:
        return np.fromfile(self._path("ids.i64"), dtype="<i8", count=self._n)

    def _remember(self, sid: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(sid)
        self._recent_set.add(sid)

    def _mapped(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        with self._lock:
            n = self._n
            if self._maps is None or self._mapped_n != n:
                if n == 0:
                    self._maps = (
                        np.zeros((0, self.dim), np.float32),
                        np.zeros(0, np.float32),
                        np.zeros(0, np.int64),
                    )
                else:
                    self._maps = (
                        np.memmap(self._path("vectors.f32"), "<f4", "r", shape=(n, self.dim)),
                        np.memmap(self._path("norms.f32"), "<f4", "r", shape=(n,)),
                        np.memmap(self._path("ids.i64"), "<i8", "r", shape=(n,)),
                    )
                self._mapped_n = n
            return (*self._maps, n)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Read-only views (vectors, squared norms, ids) of the rows, and their count."""
        return self._mapped()

    # --- writing ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def last_id(self) -> int:
        return max(self._recent) if self._recent else 0

    @property
    def cutoff(self) -> int:
        value = self._meta.get("cutoff", 0)
        return int(value) if isinstance(value, int) else 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        """Append rows (ids must be new); returns how many were added."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        vec = np.ascontiguousarray(vectors, dtype="<f4").reshape(len(ids), self.dim)
        with self._lock:
            keep = np.array([int(i) not in self._recent_set for i in ids.tolist()], bool)
            keep &= np.isfinite(vec).all(axis=1)
            ids, vec = ids[keep], vec[keep]
            if not len(ids):
                return 0
            norms = np.einsum("ij,ij->i", vec, vec).astype("<f4")
            with (
                open(self._path("vectors.f32"), "ab") as fv,
                open(self._path("norms.f32"), "ab") as fn,
                open(self._path("ids.i64"), "ab") as fi,
            ):
                fv.write(vec.tobytes())
                fn.write(norms.tobytes())
                fi.write(ids.astype("<i8").tobytes())
            self._n += len(ids)
            for i in ids.tolist():
                self._remember(int(i))
            return len(ids)

    def reset(self, instance_id: str | None = None) -> None:
        with self._lock:
            for name in ("vectors.f32", "norms.f32", "ids.i64"):
                self._path(name).write_bytes(b"")
            self._n = 0
            self._maps = None
            self._recent.clear()
            self._recent_set.clear()
            self._meta = {"instance_id": instance_id, "cutoff": 0}
            self._write_meta()

    def sync(self, store: Store) -> int:
        """Append the sightings stored since the last sync; returns how many."""
        with self._lock:
            instance = store.instance_id()
            if self._meta.get("instance_id") != instance:
                if self._n:
                    log.info("search index: built from another database, rebuilding")
                self.reset(instance)
            added = 0
            start = max(0, self.last_id - (_LATE_WINDOW if store.dialect != "sqlite" else 0))
            while True:
                ids, vec = store.embeddings_after(start)
                if not len(ids):
                    break
                added += self.add(ids, vec)
                start = int(ids[-1])
            return added

    def forget_before(self, min_live_id: int) -> None:
        """Retention removed every sighting below ``min_live_id``: skip, then drop them."""
        with self._lock:
            if min_live_id <= self.cutoff:
                return
            self._meta["cutoff"] = int(min_live_id)
            self._write_meta()
            _, _, ids, n = self._mapped()
            dead = int(np.searchsorted(ids, min_live_id)) if n else 0
            if n and dead * 4 >= n:
                self._compact(dead)

    def _compact(self, dead: int) -> None:
        vectors, norms, ids, n = self._mapped()
        log.info("search index: compacting away %d of %d rows", dead, n)
        parts = {
            "vectors.f32": np.asarray(vectors[dead:]),
            "norms.f32": np.asarray(norms[dead:]),
            "ids.i64": np.asarray(ids[dead:]),
        }
        self._maps = None
        for name, arr in parts.items():
            tmp = self._path(name + ".tmp")
            arr.tofile(tmp)
            os.replace(tmp, self._path(name))
        self._n = n - dead

    # --- searching ----------------------------------------------------------------------

    def search(
        self, query: np.ndarray, *, radius: float, limit: int = 100
    ) -> tuple[list[Hit], int]:
        """Sightings within ``radius`` of ``query``, nearest first (at most ``limit``),
        and how many there were in all."""
        q = np.ascontiguousarray(query, np.float32).reshape(self.dim)
        qq = float(q @ q)
        r2 = np.float32(radius * radius)
        vectors, norms, ids, n = self._mapped()
        cutoff = self.cutoff
        rows: list[np.ndarray] = []
        dists: list[np.ndarray] = []
        for s in range(0, n, CHUNK_ROWS):
            e = min(n, s + CHUNK_ROWS)
            d2 = norms[s:e] - 2.0 * (vectors[s:e] @ q) + qq
            hit = np.flatnonzero(d2 <= r2)
            if hit.size:
                rows.append(hit + s)
                dists.append(d2[hit])
        if not rows:
            return [], 0
        row = np.concatenate(rows)
        d2 = np.concatenate(dists)
        hit_ids = np.asarray(ids[row])
        live = hit_ids >= cutoff
        hit_ids, d2 = hit_ids[live], d2[live]
        order = np.argsort(d2, kind="stable")[:limit]
        dist = np.sqrt(np.clip(d2[order], 0.0, None))
        return (
            [
                Hit(int(i), float(d))
                for i, d in zip(hit_ids[order].tolist(), dist.tolist(), strict=True)
            ],
            len(hit_ids),
        )
