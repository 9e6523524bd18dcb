"""Face-embedder benchmark: dlib's ResNet against the same network in ONNX Runtime.

    python -m sauron_bench.embedder [--faces N] [--batches 1,4,8,16] [--repeat R] [--json PATH]

Everything runs in one process pinned to one CPU core (``sched_setaffinity``), with
OMP/OpenBLAS/MKL threads set to 1 and ONNX Runtime's intra- and inter-op pools at 1 thread;
only the extra "onnx, 2 threads" rows widen the affinity to two cores. The chips are the real
faces of the sample photos, repeated to ``--faces`` chips. Each figure is the best of
``--repeat`` passes over all chips, in milliseconds per face.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sauron_bench.measure import allowed_cores, cpu_name

log = logging.getLogger(__name__)

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _pin(cores: list[int]) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


def _sample_chips(n: int) -> np.ndarray:
    """n aligned face chips: the faces of the sample photos, repeated."""
    import cv2
    import dlib
    import face_recognition_models

    from sauron.demo.samples import sample_photos
    from sauron.detect.embedders import extract_chips

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    found = []
    for path in sample_photos().values():
        bgr = cv2.imread(str(path))
        if bgr is None:
            continue
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        shapes = [predictor(rgb, box) for box in detector(rgb, 1)]
        if shapes:
            found.append(extract_chips(rgb, shapes))
    if not found:
        raise RuntimeError("no faces found in the sample photos")
    chips = np.concatenate(found)
    return np.ascontiguousarray(np.resize(chips, (n, *chips.shape[1:])))


def _ms_per_face(
    embed: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, batch: int, repeat: int
) -> float:
    """Best of ``repeat`` passes over all chips in batches of ``batch``, ms per face."""
    embed(chips[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(chips), batch):
            embed(chips[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return best * 1e3 / len(chips)


def run(faces: int, batches: list[int], repeat: int) -> dict[str, Any]:
    """Run the benchmark and return its results (see the module doc).

    The process's CPU affinity and thread variables are restored afterwards.
    """
    saved_env = {var: os.environ.get(var) for var in _THREAD_VARS}
    cores = allowed_cores()
    try:
        for var in _THREAD_VARS:
            os.environ[var] = "1"
        _pin(cores[:1])
        return _run_pinned(faces, batches, repeat, cores)
    finally:
        _pin(cores)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _run_pinned(faces: int, batches: list[int], repeat: int, cores: list[int]) -> dict[str, Any]:
    import onnxruntime

    from sauron.detect import resnet
    from sauron.detect.embedders import DlibEmbedder, OnnxEmbedder

    chips = _sample_chips(faces)
    batches = sorted({b for b in batches if 1 <= b <= faces}) or [1]

    t0 = time.perf_counter()
    resnet.build_onnx(resnet.load_face_resnet(resnet.default_dat_path()))
    conversion_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx1 = OnnxEmbedder(threads=1)
    load_s = time.perf_counter() - t0
    dlib_emb = DlibEmbedder()

    want = dlib_emb.embed_chips(chips)
    got = onnx1.embed_chips(chips)
    max_abs_diff = float(np.abs(want - got).max())

    dlib_batches = sorted({1, batches[-1]})
    dlib_ms = {b: _ms_per_face(dlib_emb.embed_chips, chips, b, repeat) for b in dlib_batches}
    onnx_ms = {b: _ms_per_face(onnx1.embed_chips, chips, b, repeat) for b in batches}

    onnx2_ms: dict[int, float] | None = None
    if len(cores) >= 2:
        _pin(cores[:2])
        onnx2 = OnnxEmbedder(threads=2)
        onnx2_ms = {b: _ms_per_face(onnx2.embed_chips, chips, b, repeat) for b in batches}
        _pin(cores[:1])
    else:
        log.warning("only one core is available: skipping the 2-thread ONNX runs")

    import dlib

    return {
        "cpu": cpu_name(),
        "faces": faces,
        "repeat": repeat,
        "dlib_version": dlib.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "dlib_ms_per_face": dlib_ms[1],
        "dlib_ms_per_face_by_batch": {str(b): v for b, v in dlib_ms.items()},
        "onnx_ms_per_face": {str(b): v for b, v in onnx_ms.items()},
        "onnx_2threads_ms_per_face": (
            None if onnx2_ms is None else {str(b): v for b, v in onnx2_ms.items()}
        ),
        "speedup": dlib_ms[1] / onnx_ms[1] if 1 in onnx_ms else None,
        "speedup_by_batch": {str(b): dlib_ms[1] / v for b, v in onnx_ms.items()},
        "max_abs_diff": max_abs_diff,
        "conversion_s": conversion_s,
        "onnx_load_s": load_s,
    }


def _table(result: dict[str, Any]) -> str:
    base = result["dlib_ms_per_face"]
    rows = [("dlib", 1, b, ms) for b, ms in result["dlib_ms_per_face_by_batch"].items()]
    rows += [("onnx", 1, b, ms) for b, ms in result["onnx_ms_per_face"].items()]
    for b, ms in (result["onnx_2threads_ms_per_face"] or {}).items():
        rows.append(("onnx", 2, b, ms))
    lines = [
        f"CPU: {result['cpu']}; {result['faces']} faces, best of {result['repeat']}",
        f"{'engine':<8}{'threads':>8}{'batch':>7}{'ms/face':>10}{'vs dlib':>10}",
    ]
    for engine, threads, batch, ms in rows:
        lines.append(f"{engine:<8}{threads:>8}{batch:>7}{ms:>10.2f}{base / ms:>9.1f}x")
    lines.append(
        f"max |onnx - dlib| = {result['max_abs_diff']:.2e}; "
        f"conversion {result['conversion_s']:.2f} s, session load {result['onnx_load_s']:.2f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sauron_bench.embedder", description=__doc__)
    parser.add_argument("--faces", type=int, default=16, help="chips timed per configuration")
    parser.add_argument(
        "--batches", default="1,4,8,16", help="comma-separated ONNX batch sizes (default 1,4,8,16)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes per configuration")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.faces < 1 or args.repeat < 1:
        parser.error("--faces and --repeat must be >= 1")
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error(f"bad --batches {args.batches!r}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    result = run(args.faces, batches, args.repeat)
    print(_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
