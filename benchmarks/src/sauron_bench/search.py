"""``sauron bench search``: query time of the search-by-photo index at a given size.

Builds an index of ``--rows`` faces in a temporary folder (synthetic embeddings clustered
by identity like real ones: ``--per-person`` sightings per identity), pins itself to one
CPU core with one BLAS thread, then times ``--queries`` searches for random identities
and checks a few answers against a plain numpy computation over all rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _single_core(argv: list[str]) -> None:
    """Re-run under one BLAS thread (it must be set before numpy loads), on one core."""
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1" and "SAURON_BENCH_CHILD" not in os.environ:
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "SAURON_BENCH_CHILD": "1",
        }
        raise SystemExit(
            subprocess.call([sys.executable, "-m", "sauron_bench.search", *argv], env=env)
        )
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sauron bench search", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--per-person", type=int, default=50)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--radius", type=float, default=0.6)
    parser.add_argument("--dir", type=Path, help="index folder (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _single_core(argv)

    import numpy as np

    from sauron.store.index import FaceIndex

    rng = np.random.default_rng(0)
    people = max(1, args.rows // args.per_person)
    # Identity centres spread like dlib embeddings (strangers ~0.9-1.1 apart), sightings
    # of one identity ~0.35-0.45 from each other.
    centres = (rng.standard_normal((people, 128)) * 0.085).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        index = FaceIndex(args.dir or Path(tmp))
        t0 = time.perf_counter()
        if len(index) < args.rows:
            index.reset()
            for start in range(0, args.rows, 100_000):
                ids = np.arange(start, min(args.rows, start + 100_000), dtype=np.int64)
                owner = ids % people
                noise = rng.standard_normal((len(ids), 128)).astype(np.float32) * 0.028
                index.add(ids + 1, centres[owner] + noise)
        build_s = time.perf_counter() - t0
        vectors, _, ids_all, n = index.arrays()
        t = time.perf_counter()
        index.search(centres[0], radius=args.radius)  # first touch of the mapped pages
        cold_ms = (time.perf_counter() - t) * 1000
        times, totals = [], []
        for q in range(args.queries):
            who = int(rng.integers(people))
            query = centres[who] + rng.standard_normal(128).astype(np.float32) * 0.028
            t = time.perf_counter()
            _, total = index.search(query, radius=args.radius, limit=100)
            times.append((time.perf_counter() - t) * 1000)
            totals.append(total)
            if q < 3:  # exactness: the same set as numpy over every row
                d = np.linalg.norm(np.asarray(vectors) - query, axis=1)
                want = set(np.asarray(ids_all)[d <= args.radius].tolist())
                got_all, _ = index.search(query, radius=args.radius, limit=n)
                assert {h.sighting_id for h in got_all} == want, "index missed a sighting"
        report = {
            "rows": n,
            "identities": people,
            "queries": args.queries,
            "p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1),
            "max_ms": round(float(np.max(times)), 1),
            "first_query_ms": round(cold_ms, 1),
            "mean_hits": round(float(np.mean(totals)), 1),
            "index_mb": round(n * (128 * 4 + 4 + 8) / 2**20, 1),
            "build_s": round(build_s, 1),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"search by photo: {report['rows']:,} faces ({report['index_mb']} MB), "
            f"{args.queries} queries on {report['cores']} core: p50 {report['p50_ms']} ms, "
            f"p95 {report['p95_ms']} ms, max {report['max_ms']} ms (first query after "
            f"opening: {report['first_query_ms']} ms); "
            f"{report['mean_hits']} hits a query; exact (checked against numpy)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
