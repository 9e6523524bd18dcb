"""``sauron bench detectors``: face detectors on the realistic workload, one core.

    sauron bench detectors [--frames 40] [--cnn-frames 6] [--out DIR]

For each detector, over the same frames of :mod:`sauron_bench.realistic`: milliseconds per
640x360 frame (the boxes only, no landmarks or embedding), faces found (IoU >= 0.3 with a
ground-truth face) by face-width band, and boxes that match no face. The detectors:
CenterFace (the default, :mod:`sauron.detect.centerface`) on the frame scaled 0.5, 0.75
and 1 times; dlib's HOG with no and with one upsampling, and on the frame enlarged 1.5
and 1.75 times; dlib's MMOD CNN (``mmod_human_face_detector.dat`` from
face_recognition_models) with no and one upsampling, on fewer frames as it is far slower
on a CPU.
Writes ``detectors.json`` into ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import dlib
import face_recognition_models
import numpy as np

from sauron.detect.centerface import CenterFace
from sauron.detect.tracking import iou_matrix
from sauron.imaging import bgr_to_rgb, decode_jpeg
from sauron_bench.realistic import make_realistic_workload
from sauron_bench.workload import Workload

log = logging.getLogger(__name__)

BANDS = ((40, 60), (60, 90), (90, 151))
Finder = Callable[[np.ndarray], np.ndarray]  # RGB image -> (n, 4) xyxy boxes


def hog_finder(upsample: int) -> Finder:
    hog = dlib.get_frontal_face_detector()

    def find(rgb: np.ndarray) -> np.ndarray:
        rects, _, _ = hog.run(rgb, upsample, 0.0)
        return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects]).reshape(-1, 4)

    return find


def hog_scaled_finder(scale: float) -> Finder:
    """HOG with no upsampling on the frame enlarged ``scale`` times: a middle way between
    upsample 0 and 1 (which doubles both sides)."""
    hog = hog_finder(0)

    def find(rgb: np.ndarray) -> np.ndarray:
        big = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        return np.round(hog(big) / scale).astype(int).reshape(-1, 4)

    return find


def mmod_finder(upsample: int) -> Finder:
    cnn = dlib.cnn_face_detection_model_v1(
        face_recognition_models.cnn_face_detector_model_location()
    )

    def find(rgb: np.ndarray) -> np.ndarray:
        found = cnn(rgb, upsample)
        return np.array(
            [[d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()] for d in found]
        ).reshape(-1, 4)

    return find


def centerface_finder(scale: float) -> Finder:
    """CenterFace (ONNX Runtime, one thread) on the frame scaled ``scale`` times."""
    model = CenterFace()

    def find(rgb: np.ndarray) -> np.ndarray:
        boxes, _ = model(rgb, scale=scale)
        return np.round(boxes).astype(int).reshape(-1, 4)

    return find


def measure_detector(work: Workload, find: Finder, frames_per_camera: int) -> dict[str, Any]:
    """ms per frame and recall by band of one detector over the first frames of each camera."""
    found = np.zeros(len(BANDS), int)
    total = np.zeros(len(BANDS), int)
    false_boxes = frames = 0
    seconds = 0.0
    step = max(1, len(work.clips[0]) // frames_per_camera)
    for ci in range(len(work.clips)):
        for n in range(0, step * frames_per_camera, step):
            rgb = bgr_to_rgb(decode_jpeg(work.jpeg(ci, n)))
            t0 = time.perf_counter()
            boxes = find(rgb)
            seconds += time.perf_counter() - t0
            frames += 1
            truth = work.people(ci, n)
            matched: set[int] = set()
            if truth and len(boxes):
                iou = iou_matrix(np.array([b for _, b in truth]), boxes)
            for k, (_, box) in enumerate(truth):
                width = box[2] - box[0]
                band = next((i for i, (lo, hi) in enumerate(BANDS) if lo <= width < hi), None)
                hit = False
                if len(boxes):
                    j = int(np.argmax(iou[k]))
                    hit = iou[k, j] >= 0.3 and j not in matched
                    if hit:
                        matched.add(j)
                if band is not None:
                    total[band] += 1
                    found[band] += hit
            false_boxes += len(boxes) - len(matched)
    return {
        "frames": frames,
        "ms_per_frame": round(seconds * 1e3 / max(1, frames), 1),
        "recall": round(float(found.sum() / max(1, total.sum())), 4),
        "recall_by_width": {
            f"{lo}-{hi - 1}px": round(float(f / t), 4) if t else None
            for (lo, hi), f, t in zip(BANDS, found, total, strict=True)
        },
        "faces": int(total.sum()),
        "false_boxes": int(false_boxes),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sauron bench detectors", description=__doc__)
    p.add_argument("--frames", type=int, default=40, help="frames per camera (HOG)")
    p.add_argument("--cnn-frames", type=int, default=6, help="frames per camera (MMOD CNN)")
    p.add_argument("--out", type=Path, default=Path("sauron-bench"))
    args = p.parse_args(argv)
    work = make_realistic_workload()
    plan: list[tuple[str, Callable[[], Finder], int]] = [
        ("centerface, frame x0.5", lambda: centerface_finder(0.5), args.frames),
        ("centerface, frame x0.75", lambda: centerface_finder(0.75), args.frames),
        ("centerface, frame x1", lambda: centerface_finder(1.0), args.frames),
        ("dlib-hog upsample 0", lambda: hog_finder(0), args.frames),
        ("dlib-hog upsample 1", lambda: hog_finder(1), args.frames),
        ("dlib-hog, frame x1.5", lambda: hog_scaled_finder(1.5), args.frames),
        ("dlib-hog, frame x1.75", lambda: hog_scaled_finder(1.75), args.frames),
        ("dlib-mmod-cnn upsample 0", lambda: mmod_finder(0), args.cnn_frames),
        ("dlib-mmod-cnn upsample 1", lambda: mmod_finder(1), args.cnn_frames),
    ]
    results = {}
    for name, make, frames in plan:
        if frames <= 0:
            continue
        results[name] = measure_detector(work, make(), frames)
        log.info("%s: %s", name, results[name])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "detectors.json").write_text(json.dumps(results, indent=2) + "\n")
    head = f"{'detector':28} {'ms/frame':>9} {'recall':>7}  " + "  ".join(
        f"{lo}-{hi - 1}px" for lo, hi in BANDS
    )
    print(head)
    for name, r in results.items():
        bands = "  ".join(
            f"{v if v is not None else '-':>8}" for v in r["recall_by_width"].values()
        )
        print(f"{name:28} {r['ms_per_frame']:9} {r['recall']:7}  {bands}")
    print(f"wrote {args.out / 'detectors.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
