"""Models called from many threads at once give the single-threaded results and never crash.

Before the models had locks, two threads in one dlib HOG detector crashed the process
(``sauron run --demo`` from a cold cache died with SIGSEGV), so the threaded part runs in a
child process: a crash there fails this test instead of killing the test run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

THREADS = 8
ROUNDS = 2
#: the photos every thread works on; "pair" is obama.jpg and biden.jpg side by side, which
#: the enrollment check refuses (two faces), so refusals are compared too
PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "obama_partial_face.jpg", "pair")


def _jobs(photos: dict[str, Path]) -> list[tuple[str, str]]:
    return [(kind, name) for name in PHOTOS for kind in ("detect", "enroll", "search")]


def _run_job(kind: str, name: str, ctx: dict[str, object]) -> np.ndarray | str:
    """One model call the way the product makes it; an array, or the refusal's text."""
    from sauron.detect.models import FaceModel
    from sauron.match.enroll import EnrollError, photo_embedding, photo_upsample
    from sauron.serve.web.enrollment import Enroller
    from sauron.store.index import FaceIndex

    rgb = ctx[f"rgb:{name}"]
    assert isinstance(rgb, np.ndarray)
    model = ctx["model"]
    assert isinstance(model, FaceModel)
    try:
        if kind == "detect":  # what a detect stage does with a frame
            det = model.detect(rgb)
            return np.concatenate([det.xyxy.ravel(), det.embeddings.ravel()]).astype(np.float64)
        if kind == "enroll":  # the enrollment check of a photo (CLI, folder, web upload)
            sized = model.with_upsample(photo_upsample(rgb))
            return photo_embedding(sized, rgb, source=name).astype(np.float64)
        # search by photo: the web app's upload path, then the index
        enroller = ctx["enroller"]
        index = ctx["index"]
        assert isinstance(enroller, Enroller) and isinstance(index, FaceIndex)
        data = ctx[f"bytes:{name}"]
        assert isinstance(data, bytes)
        _, emb = enroller.embedding(data, name, largest=True)
        hits, _ = index.search(emb, radius=0.6, limit=10)
        return np.array([v for h in hits for v in (h.sighting_id, h.distance)], np.float64)
    except EnrollError as exc:
        return str(exc)


def _context(photos: dict[str, Path], tmp: Path) -> dict[str, object]:
    import cv2

    from sauron.config import load_settings
    from sauron.detect.models import FaceModel
    from sauron.serve.web.enrollment import Enroller
    from sauron.store.index import FaceIndex

    ctx: dict[str, object] = {"model": FaceModel(detector="dlib-hog")}
    for name in PHOTOS[:-1]:
        ctx[f"bytes:{name}"] = photos[name].read_bytes()
        bgr = cv2.imread(str(photos[name]))
        ctx[f"rgb:{name}"] = np.ascontiguousarray(bgr[:, :, ::-1])
    left, right = (cv2.imread(str(photos[n])) for n in ("obama.jpg", "biden.jpg"))
    right = cv2.resize(right, (right.shape[1] * left.shape[0] // right.shape[0], left.shape[0]))
    pair = np.hstack([left, right])
    ctx["bytes:pair"] = cv2.imencode(".png", pair)[1].tobytes()
    ctx["rgb:pair"] = np.ascontiguousarray(pair[:, :, ::-1])
    ctx["enroller"] = Enroller(load_settings(None, {}), 20 * 1024 * 1024)
    # sightings to find: every face of the photos, and noisy copies of each
    model = ctx["model"]
    assert isinstance(model, FaceModel)
    faces = np.concatenate([model.detect(ctx[f"rgb:{n}"]).embeddings for n in PHOTOS])  # type: ignore[arg-type]
    rng = np.random.default_rng(7)
    vectors = np.concatenate([faces + rng.normal(0, 0.02, faces.shape) for _ in range(20)])
    index = FaceIndex(tmp / "index")
    index.add(np.arange(1, len(vectors) + 1), vectors.astype(np.float32))
    ctx["index"] = index
    return ctx


def _same(a: np.ndarray | str, b: np.ndarray | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.shape == b.shape and bool(np.array_equal(a, b))


def stress(out: Path) -> None:
    """Single-threaded reference results, then THREADS threads x ROUNDS rounds of every job
    at once; writes how many results differed from the reference to ``out``."""
    from sauron.demo.samples import sample_photos

    photos = sample_photos()
    ctx = _context(photos, out.parent)
    jobs = _jobs(photos)
    # the reference: a fresh search path, so the threads also race on a cold enroller
    reference = {job: _run_job(*job, ctx) for job in jobs}
    ctx["enroller"] = _context(photos, out.parent / "again")["enroller"]
    results: list[tuple[tuple[str, str], np.ndarray | str]] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(jobs) * ROUNDS) % len(jobs)
        start.wait()
        for i in order.tolist():
            got = _run_job(*jobs[i], ctx)
            with lock:
                results.append((jobs[i], got))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wrong = [f"{job}" for job, got in results if not _same(got, reference[job])]
    refused = sorted({f"{job}" for job, ref in reference.items() if isinstance(ref, str)})
    out.write_text(
        f"results {len(results)}\nwrong {len(wrong)}\nrefused {len(refused)}\n"
        + "".join(f"differs {w}\n" for w in wrong[:20])
    )


@pytest.mark.slow
def test_models_from_eight_threads(tmp_path: Path, photos: dict[str, Path]) -> None:
    out = tmp_path / "stress.txt"
    proc = subprocess.run(
        [sys.executable, __file__, str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"the threaded run died (rc {proc.returncode}):\n{proc.stderr}"
    lines = dict(line.split(" ", 1) for line in out.read_text().splitlines())
    assert int(lines["results"]) == THREADS * ROUNDS * len(PHOTOS) * 3
    assert int(lines["wrong"]) == 0, out.read_text()
    # the pair is refused by the enrollment check (the search takes its largest face)
    assert int(lines["refused"]) == 1


if __name__ == "__main__":
    stress(Path(sys.argv[1]))
