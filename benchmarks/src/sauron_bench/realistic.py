"""The realistic benchmark workload: faces walking over real surveillance footage.

The background is real footage with real motion: ``vtest.avi`` (pedestrians crossing a
walkway, 768x576 at 10 frames/s, 795 frames), which Debian's ``opencv-doc`` package ships. It
is fetched at run time with ``apt-get download`` and unpacked with ``dpkg-deb`` into the
cache (``$SAURON_CACHE``, else ``~/.cache/sauron``); nothing of it is part of the project.

Each camera shows a different 300-frame stretch of the footage (a different crop, one
mirrored), cut to 640x360. Over it, head-and-shoulders cards cut from the sample photos
(:mod:`sauron.demo.samples`) walk in three lanes: people enter and leave at random times,
come closer or move away (faces 40 to 150 pixels wide), and up to three are in view at
once. The watched person (shown from other photos than the enrolled one) is one of them;
the others are strangers. Frames get sensor noise and the camera's JPEG encoding. The
ground truth per frame is the box of every face at least three quarters visible.

Everything is deterministic for given options, so two runs see the same frames.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sauron import SauronError
from sauron.demo.samples import astronaut_photo, cache_dir, sample_photos
from sauron.demo.synth import Walker, paste_walkers
from sauron.imaging import encode_jpeg
from sauron.types import Box
from sauron_bench.workload import JPEG_QUALITY, WATCHED, Clip, Workload

log = logging.getLogger(__name__)

FOOTAGE_PACKAGE = "opencv-doc"
FOOTAGE_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"
LANES = (0.2, 0.5, 0.8)
# face widths in pixels of a 640-wide frame: the middle lane may come closest
LANE_FACE_PX = ((40, 110), (60, 150), (40, 110))


def footage_path() -> Path:
    """The cached ``vtest.avi``, fetched from Debian's opencv-doc package the first time."""
    out = cache_dir() / "footage" / "vtest.avi"
    if out.exists():
        return out
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SauronError("the realistic workload needs apt-get and dpkg-deb to fetch vtest.avi")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        log.info("fetching %s from the Debian archive for its vtest.avi", FOOTAGE_PACKAGE)
        got = subprocess.run(
            ["apt-get", "download", FOOTAGE_PACKAGE],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        debs = sorted(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise SauronError(f"apt-get download {FOOTAGE_PACKAGE} failed: {got.stderr[-400:]}")
        unpack = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # it complains of the pipe closed once we have the file
        )
        assert unpack.stdout is not None
        try:
            with tarfile.open(fileobj=unpack.stdout, mode="r|") as tar:
                for member in tar:
                    if member.name == FOOTAGE_MEMBER and member.isfile():
                        src = tar.extractfile(member)
                        if src is not None:
                            part = out.with_suffix(".part")
                            part.write_bytes(src.read())
                            part.rename(out)
                        break
        finally:
            unpack.stdout.close()
            unpack.wait()
    if not out.exists():
        raise SauronError(f"{FOOTAGE_PACKAGE} did not contain {FOOTAGE_MEMBER}")
    return out


def _backgrounds(camera: int, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """``frames`` frames of the footage for one camera: its own stretch and crop."""
    width, height = size
    cap = cv2.VideoCapture(str(footage_path()))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    start = (camera * 240) % max(1, total - frames) if total > frames else 0
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    out: list[np.ndarray] = []
    try:
        while len(out) < frames:
            ok, bgr = cap.read()
            if not ok:  # footage shorter than asked: play it backwards from here
                if not out:
                    raise SauronError("could not read frames from vtest.avi")
                out.extend(out[::-1][: frames - len(out)])
                break
            h, w = bgr.shape[:2]
            ch = min(h, round(w * height / width))
            y0 = [0, (h - ch) // 2, h - ch][camera % 3]
            crop = bgr[y0 : y0 + ch]
            if camera % 2 == 1:
                crop = crop[:, ::-1]
            out.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    finally:
        cap.release()
    return out


def _cast() -> dict[str, list[Path]]:
    photos = sample_photos()
    return {
        WATCHED: [photos["obama2.jpg"], photos["obama3.jpg"]],
        "biden": [photos["biden.jpg"]],
        "astronaut": [astronaut_photo()],
    }


def _walkers(camera: int, frames: int, width: int) -> list[Walker]:
    """Each lane holds one person at a time, with gaps; nobody is in two lanes at once.
    The watched person comes first in one lane so every camera shows them."""
    rng = np.random.default_rng([camera, 11])
    cast = _cast()
    busy: list[tuple[str, int, int]] = []
    segments: list[tuple[int, int, int]] = []  # (lane, enter, exit)

    def span(lo: int, hi: int) -> int:  # in frames of a 300-frame clip, scaled to this one
        a = round(lo * frames / 300)
        return int(rng.integers(a, max(a + 1, round(hi * frames / 300))))

    for lane in range(len(LANES)):
        t = span(0, 40)
        while t < frames - round(frames / 15):
            length = max(2, span(50, 150))
            segments.append((lane, t, min(frames, t + length)))
            t += length + span(5, 40)
    segments.sort(key=lambda s: s[1])
    walkers = []
    for lane, enter, exit_ in segments:
        free = [p for p in cast if all(b[0] != p or b[2] <= enter or b[1] >= exit_ for b in busy)]
        if not free:
            continue
        person = WATCHED if WATCHED in free and rng.random() < 0.5 else str(rng.choice(free))
        busy.append((person, enter, exit_))
        photo = cast[person][int(rng.integers(0, len(cast[person])))]
        lo, hi = LANE_FACE_PX[lane]
        s0, s1 = (rng.uniform(lo, hi) / width for _ in range(2))
        x, y = LANES[lane], rng.uniform(0.32, 0.48)
        dx, dy = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)
        walkers.append(
            Walker(person, photo, enter, exit_, (x - dx, y - dy), (x + dx, y + dy), s0, s1)
        )
    return walkers


def render_camera(
    camera: int, frames: int, size: tuple[int, int] = (640, 360), noise: float = 2.0
) -> Clip:
    """One camera's frames (JPEG) and truth: walkers over its stretch of the footage."""
    width = size[0]
    walkers = _walkers(camera, frames, width)
    noise_rng = np.random.default_rng([camera, 5])
    jpegs: list[bytes] = []
    truth: list[tuple[tuple[str, Box], ...]] = []
    for f, bg in enumerate(_backgrounds(camera, frames, size)):
        frame = bg.astype(np.float32)
        row = paste_walkers(frame, walkers, f, keep=0.75)
        frame += noise_rng.standard_normal(frame.shape, dtype=np.float32) * noise
        jpegs.append(encode_jpeg(np.clip(frame, 0, 255).astype(np.uint8), JPEG_QUALITY))
        truth.append(tuple(row))
    return Clip(tuple(jpegs), tuple(truth))


def make_realistic_workload(
    *, cameras: int = 3, frames: int = 300, size: tuple[int, int] = (640, 360)
) -> Workload:
    """``cameras`` clips of ``frames`` frames of faces over real footage."""
    clips = tuple(render_camera(c, frames, size) for c in range(cameras))
    work = Workload(clips, size[0], size[1])
    log.info(
        "realistic workload: %d cameras of %d frames over vtest.avi, %dx%d, %.2f faces a frame",
        cameras,
        frames,
        size[0],
        size[1],
        work.faces_per_frame,
    )
    return work


def face_widths(work: Workload) -> np.ndarray:
    """Widths of every ground-truth face of the workload, in pixels."""
    return np.array([b[2] - b[0] for c in work.clips for row in c.truth for _, b in row])
