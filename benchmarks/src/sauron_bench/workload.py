"""The benchmark's fixed, generated workload: N cameras of 640x360 frames with 1-3 faces.

Each camera replays a short synthetic clip (:func:`sauron.demo.synth.render_clip`: sample
photos pasted over a textured scene, sensor noise, H.264 round trip), read back and
JPEG-encoded exactly as :mod:`sauron.ingest.producer` does for a real camera. Clips play
forwards then backwards ("ping-pong"), so a camera can run for any number of frames with
continuous motion and persistent faces: a tracker sees the same people for a long time,
as a surveillance camera would. Faces come and go too: in every clip one person stays
throughout, a second leaves part-way and a third arrives part-way, so a frame holds one to
three faces.

Everything is deterministic for given options, so two runs (or two machines) process the
same frames. The watchlist holds one person, shown in every clip from other photos than
the enrolled one; the other people are strangers.
"""

from __future__ import annotations

import logging
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sauron.codec import Person
from sauron.demo.samples import astronaut_photo, sample_photos
from sauron.demo.synth import Walker, render_clip
from sauron.imaging import encode_jpeg
from sauron.ingest.sources import SourceOptions, open_source
from sauron.types import Box

log = logging.getLogger(__name__)

WATCHED = "obama"
ENROLLED_PHOTO = "obama.jpg"
JPEG_QUALITY = 85  # the camera default (CameraConfig.jpeg_quality)
# Horizontal lanes of the three people, so their faces never overlap.
_LANES = (0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Clip:
    """One camera's distinct frames (JPEG) and, per frame, who is where."""

    jpegs: tuple[bytes, ...]
    truth: tuple[tuple[tuple[str, Box], ...], ...]

    def __len__(self) -> int:
        return len(self.jpegs)

    def index(self, number: int) -> int:
        """The clip frame shown as frame ``number`` of the ping-pong replay."""
        n = len(self.jpegs)
        if n == 1:
            return 0
        period = 2 * n - 2
        i = number % period
        return i if i < n else period - i


@dataclass(frozen=True)
class Workload:
    """The clips, the frame size and the camera names that spread evenly on partitions."""

    clips: tuple[Clip, ...]
    width: int
    height: int

    def clip_of(self, camera_index: int) -> Clip:
        return self.clips[camera_index % len(self.clips)]

    def jpeg(self, camera_index: int, number: int) -> bytes:
        """Frame ``number`` of camera ``camera_index`` (cameras beyond the clips reuse them,
        half a clip further on, so no two cameras show the same frame at once)."""
        clip = self.clip_of(camera_index)
        shift = (camera_index // len(self.clips)) * (len(clip) // 2)
        return clip.jpegs[clip.index(number + shift)]

    def people(self, camera_index: int, number: int) -> tuple[tuple[str, Box], ...]:
        clip = self.clip_of(camera_index)
        shift = (camera_index // len(self.clips)) * (len(clip) // 2)
        return clip.truth[clip.index(number + shift)]

    @property
    def faces_per_frame(self) -> float:
        return float(np.mean([len(row) for c in self.clips for row in c.truth]))


def camera_names(count: int, partitions: int) -> list[str]:
    """``count`` camera ids whose frames land on distinct partitions, round-robin.

    Camera partitioning hashes the id (CRC-32, see :func:`sauron.bus.topics.camera_partition`),
    so arbitrary ids can pile onto one partition and one worker; the benchmark picks ids
    that spread evenly, as an operator would by choosing the partition count.
    """
    names = []
    for j in range(count):
        target = j % partitions
        k = 0
        while True:
            name = f"cam{j:02d}" + (f"-{k}" if k else "")
            if zlib.crc32(name.encode()) % partitions == target:
                names.append(name)
                break
            k += 1
    return names


def _walkers(clip: int, frames: int) -> list[Walker]:
    photos = sample_photos()
    rng = np.random.default_rng([clip, 7])
    cast = [
        (WATCHED, photos["obama2.jpg" if clip % 2 == 0 else "obama3.jpg"]),
        ("biden", photos["biden.jpg"]),
        ("astronaut", astronaut_photo()),
    ]
    order = rng.permutation(3)
    lanes = rng.permutation(3)
    leave = int(frames * rng.uniform(0.4, 0.8))
    arrive = int(frames * rng.uniform(0.3, 0.7))
    spans = [(0, frames), (0, leave), (arrive, frames)]
    walkers = []
    for (person, photo), lane, (enter, exit_) in zip(
        (cast[i] for i in order), lanes, spans, strict=True
    ):
        x = _LANES[int(lane)]
        dx, y = rng.uniform(-0.05, 0.05), rng.uniform(0.38, 0.46)
        s0, s1 = rng.uniform(0.14, 0.17), rng.uniform(0.17, 0.2)
        walkers.append(Walker(person, photo, enter, exit_, (x - dx, y), (x + dx, y + 0.03), s0, s1))
    return walkers


def _render(clip: int, frames: int, size: tuple[int, int], fps: float, folder: Path) -> Clip:
    truth = render_clip(
        folder / f"clip{clip}.mp4",
        _walkers(clip, frames),
        frames=frames,
        fps=fps,
        size=size,
        seed=100 + clip,
    )
    source = open_source(str(truth.path), SourceOptions(max_width=size[0], realtime=False))
    try:
        jpegs = tuple(encode_jpeg(bgr, JPEG_QUALITY) for bgr in source.frames())
    finally:
        source.close()
    if len(jpegs) != frames:
        raise RuntimeError(f"clip {clip}: rendered {frames} frames but read {len(jpegs)} back")
    return Clip(jpegs, tuple(tuple(row) for row in truth.people))


def make_workload(
    *, clips: int = 4, frames: int = 60, size: tuple[int, int] = (640, 360), fps: float = 10.0
) -> Workload:
    """Render ``clips`` distinct clips of ``frames`` frames each (a few seconds)."""
    with tempfile.TemporaryDirectory(prefix="sauron-bench-") as tmp:
        rendered = tuple(_render(c, frames, size, fps, Path(tmp)) for c in range(clips))
    work = Workload(rendered, size[0], size[1])
    log.info(
        "workload: %d clips of %d frames, %dx%d, %.2f faces per frame",
        clips,
        frames,
        size[0],
        size[1],
        work.faces_per_frame,
    )
    return work


def watchlist_people(embedder: str) -> list[Person]:
    """The enrolled person, embedded with the given embedder (cached on disk)."""
    from sauron.detect.models import FaceModel
    from sauron.match.enroll import person_from_photos

    model = FaceModel(detector="dlib-hog", embedder=embedder)
    return [person_from_photos(model, WATCHED, [sample_photos()[ENROLLED_PHOTO]])]
