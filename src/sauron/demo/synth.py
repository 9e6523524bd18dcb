"""Synthetic surveillance footage with known ground truth, built from the sample photos.

Each person ("walker") is a head-and-shoulders card cut from a photo around the face dlib
finds in it, pasted over a textured background at a position and size interpolated between
its first and last frame. Frames get Gaussian sensor noise and an optional JPEG round trip,
then go into an H.264 (or MPEG-4 part 2) .mp4 written with PyAV. The ground truth is the
pasted face box of every visible walker in every frame. Everything is deterministic for a
seed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import cv2
import dlib
import numpy as np

from sauron import SauronError
from sauron.demo.samples import astronaut_photo, sample_photos
from sauron.imaging import bgr_to_rgb, decode_jpeg, encode_jpeg, resize_max_width
from sauron.types import Box

log = logging.getLogger(__name__)

WATCHED = "obama"  # the person every demo clip shows in a known frame range
# card margins around the face box, in face widths/heights: left, top, right, bottom
_MARGINS = (0.55, 0.6, 0.55, 1.1)
_CARD_FACE_W = 256  # cards are kept at most this face width; frames need less


@dataclass(frozen=True)
class Walker:
    """One person crossing the view. Frames ``enter <= f < exit`` show them; the face
    centre moves from ``start_xy`` to ``end_xy`` and the face width from ``scale0`` to
    ``scale1``, all as fractions of the frame width/height."""

    person: str
    photo: Path
    enter: int
    exit: int
    start_xy: tuple[float, float]
    end_xy: tuple[float, float]
    scale0: float
    scale1: float


@dataclass(frozen=True)
class ClipTruth:
    """A rendered clip and, per frame, (person, face box xyxy in frame pixels)."""

    camera: str
    path: Path
    frames: int
    fps: float
    width: int
    height: int
    people: list[list[tuple[str, Box]]]

    def frames_with(self, person: str) -> list[int]:
        """Indices of the frames where ``person`` is visible."""
        return [i for i, row in enumerate(self.people) if any(p == person for p, _ in row)]


@lru_cache(maxsize=1)
def _face_detector() -> Any:
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=16)
def _card(photo: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Cut a head-and-shoulders card from a photo: (BGR card, float32 alpha, face box)."""
    image = decode_jpeg(photo.read_bytes())
    small = resize_max_width(image, 640)
    rects = _face_detector()(bgr_to_rgb(small), 0) or _face_detector()(bgr_to_rgb(small), 1)
    if not rects:
        raise SauronError(f"no face found in {photo}")
    r = max(rects, key=lambda r: r.width() * r.height())
    s = image.shape[1] / small.shape[1]
    left, top, right, bottom = (v * s for v in (r.left(), r.top(), r.right(), r.bottom()))
    fw, fh = right - left, bottom - top
    h, w = image.shape[:2]
    x0, y0 = max(0, round(left - _MARGINS[0] * fw)), max(0, round(top - _MARGINS[1] * fh))
    x1 = min(w, round(right + _MARGINS[2] * fw))
    y1 = min(h, round(bottom + _MARGINS[3] * fh))
    card = image[y0:y1, x0:x1]
    face = (left - x0, top - y0, right - x0, bottom - y0)
    k = min(1.0, _CARD_FACE_W / fw)
    if k < 1.0:
        card = cv2.resize(card, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        face = (face[0] * k, face[1] * k, face[2] * k, face[3] * k)
    ch, cw = card.shape[:2]
    feather = max(2.0, 0.06 * min(ch, cw))  # soft edges so the card is not a hard rectangle
    ry = np.clip(np.minimum(np.arange(ch) + 1, ch - np.arange(ch)) / feather, 0, 1)
    rx = np.clip(np.minimum(np.arange(cw) + 1, cw - np.arange(cw)) / feather, 0, 1)
    alpha = np.minimum.outer(ry, rx).astype(np.float32)
    return np.ascontiguousarray(card), alpha, face


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A deterministic textured scene: soft colour blobs, grain, a floor and some doors."""
    low = rng.uniform(60, 190, (5, 9, 1)) + rng.uniform(-25, 25, (1, 1, 3))  # tinted greys
    bg: np.ndarray = cv2.resize(
        low.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    grain = rng.normal(0, 10, (height // 4, width // 4)).astype(np.float32)
    bg += cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    horizon = int(height * rng.uniform(0.6, 0.75))
    bg[horizon:] *= 0.6
    for _ in range(int(rng.integers(2, 5))):  # doors / windows / shelves
        x, w = int(rng.integers(0, width - 40)), int(rng.integers(30, 120))
        y, h = int(rng.integers(0, horizon // 2)), int(rng.integers(horizon // 3, horizon))
        colour = tuple(float(c) for c in rng.integers(30, 230, 3))
        cv2.rectangle(bg, (x, y), (x + w, min(horizon, y + h)), colour, -1)
        cv2.rectangle(bg, (x, y), (x + w, min(horizon, y + h)), (20.0, 20.0, 20.0), 2)
    for y in range(horizon, height, 14):  # floor tiles
        cv2.line(bg, (0, y), (width, y), (35.0, 35.0, 35.0), 1)
    return np.clip(bg, 0, 255)


def _lerp(a: float, b: float, u: float) -> float:
    return a + (b - a) * u


def _place(w: Walker, f: int, width: int, height: int) -> tuple[int, int, float, Box] | None:
    """Card origin, card scale and face box of a walker in frame f, or None if absent."""
    if not w.enter <= f < w.exit:
        return None
    u = (f - w.enter) / max(1, w.exit - 1 - w.enter)
    _, _, face = _card(w.photo)
    k = _lerp(w.scale0, w.scale1, u) * width / (face[2] - face[0])
    cx, cy = _lerp(w.start_xy[0], w.end_xy[0], u) * width, _lerp(w.start_xy[1], w.end_xy[1], u)
    cy *= height
    ox = round(cx - (face[0] + face[2]) / 2 * k)
    oy = round(cy - (face[1] + face[3]) / 2 * k)
    box = (ox + round(face[0] * k), oy + round(face[1] * k))
    return ox, oy, k, (*box, ox + round(face[2] * k), oy + round(face[3] * k))


def _paste(frame: np.ndarray, photo: Path, ox: int, oy: int, k: float) -> Box:
    """Alpha-blend a walker's card into a float32 frame; returns the card's frame rect."""
    card, alpha, _ = _card(photo)
    size = (max(1, round(card.shape[1] * k)), max(1, round(card.shape[0] * k)))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    card = cv2.resize(card, size, interpolation=interp).astype(np.float32)
    alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)[..., None]
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + size[0]), min(h, oy + size[1])
    if x0 < x1 and y0 < y1:
        c = card[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        frame[y0:y1, x0:x1] = c * a + frame[y0:y1, x0:x1] * (1.0 - a)
    return ox, oy, ox + size[0], oy + size[1]


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def _clip_box(b: Box, other: Box) -> Box:
    return (max(b[0], other[0]), max(b[1], other[1]), min(b[2], other[2]), min(b[3], other[3]))


def paste_walkers(
    frame: np.ndarray, walkers: Sequence[Walker], f: int, *, keep: float = 0.5
) -> list[tuple[str, Box]]:
    """Paste the walkers visible in frame ``f`` into a float32 frame, in order, and return
    the truth: (person, face box) of each face with at least ``keep`` of it inside the
    frame and at most ``1 - keep`` hidden by a later card."""
    height, width = frame.shape[:2]
    drawn: list[tuple[str, Box, Box]] = []  # (person, face box, card rect)
    for w in walkers:
        placed = _place(w, f, width, height)
        if placed is not None:
            ox, oy, k, face = placed
            drawn.append((w.person, face, _paste(frame, w.photo, ox, oy, k)))
    row: list[tuple[str, Box]] = []
    for i, (person, face, _) in enumerate(drawn):
        hidden = max((_area(_clip_box(face, c)) for _, _, c in drawn[i + 1 :]), default=0)
        inside = _clip_box(face, (0, 0, width, height))
        if _area(inside) >= keep * _area(face) and hidden <= (1 - keep) * _area(face):
            row.append((person, inside))
    return row


def _open_writer(path: Path, fps: float, width: int, height: int) -> tuple[Any, Any]:
    out = av.open(str(path), "w")
    codec, options = "libx264", {"crf": "18", "preset": "veryfast"}
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # no H.264 encoder in this FFmpeg build
        codec, options = "mpeg4", {"qscale": "3"}
    rate = Fraction(fps).limit_denominator(1001)
    geometry: dict[str, Any] = {"width": width, "height": height, "pix_fmt": "yuv420p"}
    stream = out.add_stream(codec, rate=rate, options=options, **geometry)
    return out, stream


def render_clip(
    path: Path,
    walkers: Sequence[Walker],
    *,
    frames: int,
    fps: float = 10,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    noise: float = 3.0,
    jpeg_quality: int | None = 85,
    camera: str | None = None,
) -> ClipTruth:
    """Render walkers over a background into an .mp4 at ``path`` and return the truth.

    Walkers are drawn in order; a face more than half hidden by a later card, or more
    than half outside the frame, is left out of the truth. ``size`` is (width, height)
    and must be even for yuv420p.
    """
    width, height = size
    if width % 2 or height % 2 or frames < 1 or fps <= 0:
        raise ValueError(f"need even size, frames >= 1 and fps > 0, got {size} {frames} {fps}")
    rng = np.random.default_rng(seed)
    background = _background(width, height, rng)
    noise_rng = np.random.default_rng([seed, 1])
    camera = camera or path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    people: list[list[tuple[str, Box]]] = []
    out, stream = _open_writer(path, fps, width, height)
    try:
        for f in range(frames):
            frame = background.copy()
            people.append(paste_walkers(frame, walkers, f))
            if noise > 0:
                frame += noise_rng.standard_normal(frame.shape, dtype=np.float32) * noise
            image = np.clip(frame, 0, 255).astype(np.uint8)
            stamp = f"{camera.upper()}  {f / fps:07.2f}s"
            cv2.putText(image, stamp, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (240, 240, 240), 1)
            if jpeg_quality is not None:
                image = decode_jpeg(encode_jpeg(image, jpeg_quality))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
    return ClipTruth(camera, path, frames, float(fps), width, height, people)


def demo_clips(out_dir: Path, *, frames: int = 60, fps: float = 10) -> list[ClipTruth]:
    """Two cameras with the watched person (obama) and strangers.

    * ``lobby``: obama (obama.jpg) walks left to right in the first half, then biden walks
      right to left;
    * ``gate``: obama (obama2.jpg, another photo) approaches on the left from 10% to 70%
      of the clip while the astronaut stands on the right from 40% to the end.
    """
    photos = sample_photos()
    n = frames
    lobby = [
        Walker(WATCHED, photos["obama.jpg"], 0, n // 2, (0.22, 0.42), (0.72, 0.46), 0.17, 0.21),
        Walker("biden", photos["biden.jpg"], n // 2, n, (0.78, 0.45), (0.3, 0.4), 0.21, 0.17),
    ]
    gate = [
        Walker(WATCHED, photos["obama2.jpg"], n // 10, n * 7 // 10, (0.26, 0.36), (0.27, 0.44),
               0.15, 0.22),
        Walker("astronaut", astronaut_photo(), n * 4 // 10, n, (0.75, 0.44), (0.73, 0.4),
               0.16, 0.19),
    ]  # fmt: skip
    out_dir = Path(out_dir)
    return [
        render_clip(out_dir / "lobby.mp4", lobby, frames=n, fps=fps, seed=1),
        render_clip(out_dir / "gate.mp4", gate, frames=n, fps=fps, seed=2),
    ]


def save_truth(truths: Sequence[ClipTruth], path: Path) -> None:
    """Write clip truths as JSON; clip paths are stored relative to the file when possible."""
    path = Path(path)
    base = os.path.abspath(path.parent)

    def rel(p: Path) -> str:
        return os.path.relpath(os.path.abspath(p), base)

    data = {
        "version": 1,
        "clips": [
            {
                "camera": t.camera,
                "path": rel(t.path),
                "frames": t.frames,
                "fps": t.fps,
                "width": t.width,
                "height": t.height,
                "people": [[[p, list(b)] for p, b in row] for row in t.people],
            }
            for t in truths
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")))


def load_truth(path: Path) -> list[ClipTruth]:
    """Read what :func:`save_truth` wrote; relative clip paths resolve against the file."""
    path = Path(path)
    data = json.loads(path.read_text())
    if data.get("version") != 1:
        raise SauronError(f"{path}: unsupported truth file version {data.get('version')!r}")
    return [
        ClipTruth(
            camera=c["camera"],
            path=Path(os.path.normpath(os.path.abspath(path.parent / c["path"]))),
            frames=int(c["frames"]),
            fps=float(c["fps"]),
            width=int(c["width"]),
            height=int(c["height"]),
            people=[[(p, (b[0], b[1], b[2], b[3])) for p, b in row] for row in c["people"]],
        )
        for c in data["clips"]
    ]
