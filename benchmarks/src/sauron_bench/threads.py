"""Models under threads: one shared set with a lock per model, or one private set per thread.

    sauron bench threads [--threads 1,2,4,8] [--rounds R] [--json PATH]

Every thread runs detection, landmarks and embedding (what an upload, a folder import or a
search by photo costs) on each sample photo, ``--rounds`` times. For each thread count the
bench reports the wall time, the photos per second, and how much the process's resident
memory grew while the models were created, in both modes. The product uses the first mode
(docs/models.md, "Threads"); this bench is how that choice was measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sauron_bench.measure import allowed_cores, cpu_name

log = logging.getLogger(__name__)


def _photos() -> list[np.ndarray]:
    import cv2

    from sauron.demo.samples import sample_photos

    out = []
    for path in sample_photos().values():
        bgr = cv2.imread(str(path))
        if bgr is not None:
            out.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return out


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def run_mode(private: bool, threads: int, rounds: int, photos: list[np.ndarray]) -> dict[str, Any]:
    """One measurement: ``threads`` threads, each with the shared models or its own."""
    from sauron.detect.models import FaceModel

    before = _rss_mib()
    models = [FaceModel(detector="dlib-hog", private=private) for _ in range(threads)]
    grown = _rss_mib() - before
    for m in models:  # first use: lazy initialisation is not part of the figure
        m.detect(photos[0])
    start = threading.Barrier(threads + 1)

    def work(model: FaceModel) -> None:
        start.wait()
        for _ in range(rounds):
            for rgb in photos:
                model.detect(rgb)

    pool = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    done = threads * rounds * len(photos)
    return {
        "mode": "private copies" if private else "shared, locked",
        "threads": threads,
        "photos": done,
        "seconds": round(wall, 3),
        "photos_per_s": round(done / wall, 2),
        "memory_growth_mib": round(grown, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sauron bench threads", description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2,4,8", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the photos per thread")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.threads.split(",") if x.strip()]
    if not counts or min(counts) < 1 or args.rounds < 1:
        ap.error("--threads needs counts >= 1 and --rounds >= 1")
    photos = _photos()
    # The shared set first: its models are created once and stay loaded, so the private
    # copies' memory figure is what each extra thread would add on top of them.
    rows = [run_mode(False, n, args.rounds, photos) for n in counts]
    rows += [run_mode(True, n, args.rounds, photos) for n in counts]
    print(f"{'mode':<16} {'threads':>7} {'photos/s':>9} {'seconds':>8} {'memory +MiB':>12}")
    for r in rows:
        print(
            f"{r['mode']:<16} {r['threads']:>7} {r['photos_per_s']:>9.2f} "
            f"{r['seconds']:>8.2f} {r['memory_growth_mib']:>12.1f}"
        )
    if args.json:
        report = {"cpu": cpu_name(), "cores": len(allowed_cores()), "runs": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        log.info("wrote %s", args.json)
    return 0
