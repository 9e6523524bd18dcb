"""``sauron bench storage``: bytes a camera writes to the store a day, measured.

Runs the demo's two cameras (``sauron run --demo``'s footage and watchlist) looped at
their own frame rate with ``sauron run --loop --no-web --db URL`` for ``--seconds`` into
a fresh store in a temporary folder, stops it as a user would
(SIGINT: open clips are finished), then reads what the store holds: the database file,
the snapshot files and the clips, and scales each to bytes per camera per day (the
run's seconds x cameras -> 86,400 s). Prints one line per figure, or one JSON object
with ``--json``; ``--out DIR`` also saves it as ``DIR/storage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAY_S = 86_400.0


def _run_demo(folder: Path, seconds: float) -> float:
    """The demo cameras looped for ``seconds`` of wall time; returns the seconds of
    footage they sent (capture time, first frame to last, from the results file)."""
    from sauron.cache import cache_dir
    from sauron.demo.run import prepare

    clips, watchlist = prepare(cache_dir() / "demo")
    cameras = [a for c in clips for a in ("--camera", f"{c.camera}={c.path}")]
    db = f"sqlite:///{folder / 'store' / 'sauron.db'}"
    (folder / "store").mkdir()
    log_path = folder / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sauron.cli",
                "run",
                *cameras,
                "--loop",
                "--no-web",
                "--watchlist",
                str(watchlist),
                "--db",
                db,
                "--results",
                str(folder / "results.jsonl"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait(120)
        ran = time.monotonic() - started
    if proc.returncode not in (0, -signal.SIGINT, 130) or ran < seconds:
        text = log_path.read_text()
        raise SystemExit(f"sauron run ended early ({proc.returncode}):\n{text[-3000:]}")
    times = [
        json.loads(line)["ts"]
        for line in (folder / "results.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return max(times) - min(times)


def _measure(folder: Path, seconds: float) -> dict[str, Any]:
    from sauron.store.db import SightingFilter, Store

    store_dir = folder / "store"
    store = Store(f"sqlite:///{store_dir / 'sauron.db'}")  # its media folder is beside it
    try:
        usage = store.media_usage()
        sightings = store.sightings(SightingFilter(), limit=10_000_000)
        alerts = store.alerts(limit=1_000_000)
    finally:
        store.close()
    cameras = sorted({s.camera for s in sightings})
    db_bytes = sum(f.stat().st_size for f in store_dir.glob("sauron.db*"))
    files = [f for f in (store_dir / "media").rglob("*") if f.is_file()]
    clips = [f for f in files if f.suffix == ".mp4"]
    per_day = DAY_S / (seconds * max(1, len(cameras)))
    figures = {
        "database": db_bytes,
        "snapshots": usage.sightings + usage.alerts,
        "clips": usage.sighting_clips + usage.alert_clips,
    }
    return {
        "seconds": round(seconds, 1),
        "cameras": cameras,
        "sightings": len(sightings),
        "alerts": len(alerts),
        "clip_files": len(clips),
        "alert_clips_per_camera_day": round(usage.alert_clips * per_day),
        "media_files_on_disk_bytes": sum(f.stat().st_size for f in files),
        "bytes": figures,
        "bytes_per_camera_day": {k: round(v * per_day) for k, v in figures.items()},
        "total_per_camera_day_gb": round(sum(figures.values()) * per_day / 1e9, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sauron bench storage", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the demo runs")
    parser.add_argument("--no-clips", action="store_true", help="with clips.enabled=false")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also save DIR/storage.json")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    if args.no_clips:
        os.environ["SAURON_CLIPS__ENABLED"] = "false"
    with tempfile.TemporaryDirectory(prefix="sauron-storage-") as tmp:
        footage_s = _run_demo(Path(tmp), args.seconds)
        result = _measure(Path(tmp), footage_s)
    result["clips_enabled"] = not args.no_clips
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "storage.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{len(result['cameras'])} cameras for {result['seconds']} s: "
            f"{result['sightings']} sightings, {result['alerts']} alerts, "
            f"{result['clip_files']} clips"
        )
        for what, n in result["bytes_per_camera_day"].items():
            print(f"  {what:12} {n / 1e6:10.1f} MB per camera-day")
        print(f"  total        {result['total_per_camera_day_gb']:10.3f} GB per camera-day")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
