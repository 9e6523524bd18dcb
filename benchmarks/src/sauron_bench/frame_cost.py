"""``sauron bench frame-cost``: where a detect process's time per frame goes.

    sauron bench frame-cost [--cameras 4] [--frames 100] [--repeat 2]
                            [--variant NAME:KEY=VALUE[,KEY=VALUE...]] ... [--out DIR]

One detect stage (the one a worker process runs, tracking on) takes the frames of
``--cameras`` clips of the realistic workload (:mod:`sauron_bench.realistic`, 640x360)
in turn, camera after camera, as a worker serving those cameras would, on one core. It
reports the CPU milliseconds a frame costs and where they go: JPEG decode, full scans,
coarse scans for newcomers, detector runs in a region around a face the template lost,
landmarks and embedding of the faces that need a fresh embedding, and the rest
(template following, tracking). With ``--variant`` the same frames are run again with
other detect settings (e.g. ``every10:detect_every=10``), alternated with the defaults
``--repeat`` times, so that the machine's load falls on all of them alike. It also
times the camera side's JPEG encode of the same frames (``cameras[].jpeg_quality``).

Writes ``frame-cost.json`` into ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sauron.config import CameraConfig, load_settings
from sauron.detect import stage as stage_module
from sauron.detect.stage import worker_stage
from sauron.imaging import decode_jpeg, encode_jpeg
from sauron.types import Frame
from sauron_bench.measure import cpu_name
from sauron_bench.realistic import render_camera

log = logging.getLogger(__name__)

#: The parts of a frame's cost, in the JSON and the table; the last is what is left.
PARTS = (
    "decode",
    "full scans",
    "coarse scans",
    "region scans",
    "landmarks of followed faces",
    "embedding",
    "rest (following, tracking)",
)


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KEY=VALUE,...`` -> (NAME, {"detect": {KEY: VALUE}}), values as YAML scalars."""
    import yaml

    name, _, rest = text.partition(":")
    if not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME:KEY=VALUE[,KEY=VALUE], got {text!r}")
    detect: dict[str, Any] = {}
    for pair in rest.split(","):
        key, eq, value = pair.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {pair!r}")
        detect[key.strip()] = yaml.safe_load(value)
    return name, {"detect": detect}


def measure(clips: list[tuple[bytes, ...]], overrides: dict[str, Any]) -> dict[str, Any]:
    """One pass of a fresh detect stage over ``clips``, frame by frame across cameras:
    CPU milliseconds a frame, by part. CPU time of this thread, which is where ONNX
    Runtime (one intra-op thread, as in the workers) and dlib do their work, so the
    figures hold on a busy machine too."""
    stage = worker_stage(load_settings(None, overrides))
    model: Any = stage.detector
    calls: Counter[str] = Counter()
    spent: dict[str, float] = defaultdict(float)

    def timed(fn: Any, part: str | Callable[..., str]) -> Any:
        """``fn`` counted under ``part``, or the part ``part(*args, **kwargs)`` names."""

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time()
            out = fn(*a, **kw)
            name = part if isinstance(part, str) else part(*a, **kw)
            spent[name] += (time.thread_time() - t0) * 1e3
            calls[name] += 1
            return out

        return wrapper

    def scan_kind(_rgb: Any, region: Any = None, *, coarse: bool = False, **_: Any) -> str:
        if region is not None:
            return "region scans"
        return "coarse scans" if coarse else "full scans"

    model.locate = timed(model.locate, scan_kind)
    model.embed = timed(model.embed, "embedding")
    model.fit_landmarks = timed(model.fit_landmarks, "landmarks of followed faces")
    decode = stage_module.decode_jpeg
    stage_module.decode_jpeg = timed(decode, "decode")
    try:
        frames = min(len(c) for c in clips)
        t0 = time.thread_time()
        for number in range(frames):
            for cam, jpegs in enumerate(clips):
                stage.process(Frame(f"cam{cam}", number, time.time(), jpegs[number]))
        total = (time.thread_time() - t0) * 1e3
    finally:
        stage_module.decode_jpeg = decode
    n = frames * len(clips)
    timed_parts = PARTS[:-1]
    out: dict[str, Any] = {"frames": n, "cpu_ms_per_frame": round(total / n, 2)}
    out.update({k: round(spent[k] / n, 2) for k in timed_parts})
    out[PARTS[-1]] = round((total - sum(spent[k] for k in timed_parts)) / n, 2)
    out["counts"] = {
        **{k: calls[k] for k in timed_parts if k != "decode"},
        "faces seen": stage.faces_seen,
        "faces embedded": stage.faces_embedded,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="sauron bench frame-cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cameras", type=int, default=4, help="clips the stage takes in turn")
    p.add_argument("--frames", type=int, default=100, help="frames of each clip")
    p.add_argument("--repeat", type=int, default=2, help="passes of every variant")
    p.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        help="NAME:KEY=VALUE[,KEY=VALUE] of the detect settings, e.g. every10:detect_every=10",
    )
    p.add_argument("--out", type=Path, default=Path("sauron-bench"))
    args = p.parse_args(argv)
    clips = [render_camera(c, args.frames).jpegs for c in range(args.cameras)]
    variants: list[tuple[str, dict[str, Any]]] = [("defaults", {}), *args.variant]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for rep in range(args.repeat):
        for name, overrides in variants:
            runs[name].append(measure(clips, overrides))
            log.info(
                "%s, pass %d: %.2f ms/frame", name, rep + 1, runs[name][-1]["cpu_ms_per_frame"]
            )
    bgr = [decode_jpeg(j) for j in clips[0]]
    quality = int(CameraConfig.model_fields["jpeg_quality"].default)
    t0 = time.process_time()
    for image in bgr:
        encode_jpeg(image, quality)
    encode_ms = (time.process_time() - t0) * 1e3 / len(bgr)
    keys = [k for k in runs["defaults"][0] if k not in ("frames", "counts")]
    summary = {
        name: {k: round(float(np.median([r[k] for r in rs])), 2) for k in keys}
        for name, rs in runs.items()
    }
    doc = {
        "version": 1,
        "options": {**vars(args), "out": "DIR", "variant": [n for n, _ in args.variant]},
        "machine": {"cpu": cpu_name()},
        "camera_jpeg_encode_ms": round(encode_ms, 2),
        "median": summary,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frame-cost.json").write_text(json.dumps(doc, indent=2) + "\n")
    head = "| part (CPU ms a frame, median of passes) | " + " | ".join(summary) + " |"
    print(head)
    print("|" + "---|" * (len(summary) + 1))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{summary[n][k]:.2f}" for n in summary) + " |")
    for name, rs in runs.items():
        print(f"{name}: counts of the first pass: {rs[0]['counts']}")
    print(f"camera side, JPEG encode of a frame (quality {quality}): {encode_ms:.2f} ms")
    print(f"wrote {args.out / 'frame-cost.json'}")
    return 0
