"""Enrollment: checking watchlist photos and turning them into reference embeddings.

A watchlist folder holds one sub-folder per person with one or more photos of them::

    watchlist/
        alice/ 1.jpg 2.png
        bob/   passport.jpg

Every photo is checked before use: it must be an image of sane size (no decompression
bomb), and hold exactly one face (or, when told, the largest face is taken).
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sauron import SauronError
from sauron.cache import cache_dir, cached_file
from sauron.codec import Person
from sauron.config import check_name
from sauron.detect.models import FaceModel
from sauron.match.watchlist import Watchlist

log = logging.getLogger(__name__)

MAX_PHOTO_BYTES = 20 * 1024 * 1024
MAX_PHOTO_PIXELS = 50_000_000
MIN_FACE_PIXELS = 40
#: upsample a photo for detection as long as it stays under this many pixels
UPSAMPLE_PIXELS = 8_000_000
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class EnrollError(SauronError):
    """A photo or person could not be enrolled; the message says why."""


class SeveralFaces(EnrollError):
    """The photo holds more than one face: asking for the largest one would take it."""


def load_photo(data: bytes, source: str = "photo", *, max_pixels: int | None = None) -> np.ndarray:
    """Decode untrusted image bytes into a C-contiguous RGB uint8 array, upright.

    Handles EXIF rotation, CMYK, grayscale, palette, alpha, 16-bit and animated images
    (first frame); refuses non-images, oversized files and decompression bombs. A photo
    over ``max_pixels`` is shrunk to about that, a JPEG by its decoder (at 1/2 to 1/8).
    """
    if len(data) > MAX_PHOTO_BYTES:
        raise EnrollError(f"{source}: file is {len(data)} bytes, the limit is {MAX_PHOTO_BYTES}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PHOTO_PIXELS:
                raise EnrollError(
                    f"{source}: {w}x{h} pixels is over the limit of "
                    f"{MAX_PHOTO_PIXELS} (decompression bomb?)"
                )
            img.seek(0)
            if max_pixels and w * h > max_pixels:  # decoded at under 2 * max_pixels
                img.draft(img.mode, _fit(w, h, max_pixels // 2))
            img.load()
    except EnrollError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise EnrollError(f"{source}: not a usable image ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise EnrollError(f"{source}: corrupt or truncated image ({exc})") from None
    upright: Image.Image = ImageOps.exif_transpose(img) or img
    if max_pixels and upright.width * upright.height > max_pixels:
        upright.thumbnail(_fit(upright.width, upright.height, max_pixels))
    if upright.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        arr = np.asarray(upright, np.float64)
        hi = float(arr.max()) or 1.0
        upright = Image.fromarray((arr * (255.0 / hi)).astype(np.uint8), "L")
    return np.ascontiguousarray(np.asarray(upright.convert("RGB"), np.uint8))


def _fit(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    return max(1, int(width * scale)), max(1, int(height * scale))


def photo_embedding(
    model: FaceModel, rgb: np.ndarray, *, largest: bool = False, source: str = "photo"
) -> np.ndarray:
    """The (128,) embedding of the one face in a photo, or an EnrollError saying why not."""
    det, shapes = model.locate(rgb)
    if not shapes:
        raise EnrollError(f"{source}: no face found in the photo")
    pick = int(np.argmax(det.areas))
    if len(shapes) > 1 and not largest:
        raise SeveralFaces(
            f"{source}: {len(shapes)} faces found; use a photo of one person "
            "or ask for the largest face"
        )
    width = int(det.xyxy[pick, 2] - det.xyxy[pick, 0])
    if width < MIN_FACE_PIXELS:
        raise EnrollError(
            f"{source}: the face is {width} px wide, too small to be useful "
            f"(at least {MIN_FACE_PIXELS} px)"
        )
    return model.embed(rgb, [shapes[pick]])[0]


def photo_upsample(rgb: np.ndarray) -> int:
    """How often to upsample a photo for HOG: while it stays under UPSAMPLE_PIXELS (at most 2).

    HOG finds faces down to ~80 px and each upsampling halves that, so faces of 20-40 px
    are found and refused as too small rather than reported as missing.
    """
    pixels = rgb.shape[0] * rgb.shape[1]
    upsample = 0
    while upsample < 2 and pixels * 4 ** (upsample + 1) <= UPSAMPLE_PIXELS:
        upsample += 1
    return upsample


class _Memo:
    """Enrollment embeddings already computed in this process, and the ones being computed.

    The pipeline's watchlist load and the web app's folder import run at the same time on
    the same photos; whichever asks second waits for the first and takes its result, so
    each photo is embedded once per process (and once per cache folder, on disk).
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._done: OrderedDict[Path, np.ndarray | EnrollError] = OrderedDict()
        self._busy: dict[Path, threading.Lock] = {}

    def get(self, key: Path, compute: Callable[[], np.ndarray]) -> np.ndarray | EnrollError:
        with self._lock:
            gate = self._busy.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                hit = self._done.get(key)
            if hit is None:
                try:
                    hit = compute()
                except EnrollError as exc:
                    hit = exc
                with self._lock:
                    self._done[key] = hit
                    while len(self._done) > self.capacity:
                        self._done.popitem(last=False)
            with self._lock:
                self._busy.pop(key, None)
        return hit


_memo = _Memo()


def enrollment_embedding(
    model: FaceModel,
    data: bytes,
    *,
    largest: bool = False,
    source: str = "photo",
    rgb: np.ndarray | None = None,
) -> np.ndarray:
    """The embedding of the one face in a photo's bytes, computed once per photo.

    Small photos are upsampled (:func:`photo_upsample`). Results are kept in this process
    and under ``<cache>/embeddings``, keyed by the photo's bytes, the embedder, the
    detector and ``largest``; ``rgb`` is the decoded photo when the caller has it already.
    """
    tag = f"|{model.embedder.name}|{model.type}|{largest}|auto-upsample"
    key = hashlib.sha256(data + tag.encode()).hexdigest()
    path = cache_dir() / "embeddings" / f"{key}.npy"

    def embed() -> bytes:
        t0 = time.perf_counter()
        image = load_photo(data, source) if rgb is None else rgb
        sized = model.with_upsample(photo_upsample(image))
        emb = photo_embedding(sized, image, largest=largest, source=source)
        log.info("enroll: embedded %s in %.0f ms", source, (time.perf_counter() - t0) * 1000)
        buf = io.BytesIO()
        np.save(buf, emb)
        return buf.getvalue()

    def compute() -> np.ndarray:  # once per cache folder, however many processes ask
        return np.asarray(np.load(cached_file(path, embed)), np.float32)

    got = _memo.get(path, compute)
    if isinstance(got, EnrollError):
        # the same photo refused earlier, perhaps under another name: say it with this one
        reason = str(got).partition(": ")[2]
        raise type(got)(f"{source}: {reason}" if reason else str(got))
    return got


def person_from_photos(
    model: FaceModel, name: str, photos: list[Path], *, largest: bool = False
) -> Person:
    """Check every photo and build the person's reference embeddings."""
    check_name(name, "person name")
    if not photos:
        raise EnrollError(f"{name}: no photos given")
    embeddings = []
    for photo in photos:
        try:
            data = photo.read_bytes()
        except OSError as exc:
            raise EnrollError(f"{photo}: cannot read ({exc.strerror})") from None
        embeddings.append(enrollment_embedding(model, data, largest=largest, source=str(photo)))
    return Person(name=name, embeddings=np.stack(embeddings).astype(np.float32))


def person_photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def load_watchlist_dir(model: FaceModel, root: Path, *, largest: bool = False) -> list[Person]:
    """Every person of a watchlist folder. A bad photo is skipped with a warning."""
    if not root.is_dir():
        raise EnrollError(f"watchlist folder {root} does not exist")
    people = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        good = []
        for photo in person_photos(folder):
            try:
                good.append(
                    enrollment_embedding(
                        model, photo.read_bytes(), largest=largest, source=str(photo)
                    )
                )
            except EnrollError as exc:
                log.warning("watchlist: skipping %s", exc)
        if good:
            people.append(Person(name=folder.name, embeddings=np.stack(good)))
        else:
            log.warning("watchlist: %s has no usable photo, not enrolled", folder.name)
    log.info("watchlist: %d people loaded from %s", len(people), root)
    return people


def enroll_into_dir(
    model: FaceModel, root: Path, name: str, photos: list[Path], *, largest: bool = False
) -> Person:
    """Check the photos, then copy them into ``root/name/`` (the embedded watchlist)."""
    person = person_from_photos(model, name, photos, largest=largest)
    dest = root / name
    dest.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()[:12]
        shutil.copyfile(photo, dest / f"{digest}{photo.suffix.lower() or '.jpg'}")
    return person


def remove_from_dir(root: Path, name: str) -> bool:
    check_name(name, "person name")
    target = root / name
    if not target.is_dir():
        return False
    shutil.rmtree(target)
    return True


def _dir_signature(root: Path) -> tuple[tuple[str, int, float], ...]:
    if not root.is_dir():
        return ()
    return tuple(
        sorted(
            (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime)
            for p in root.glob("*/*")
            if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
        )
    )


class WatchlistDirWatcher(threading.Thread):
    """Reloads a watchlist folder into a running Watchlist when its photos change.

    This is how ``sauron enroll``/``unenroll`` (and hand edits of the folder) reach a
    running embedded ``sauron run`` without a restart. Polls every ``interval`` seconds.
    """

    def __init__(
        self,
        model: FaceModel,
        root: Path,
        watchlist: Watchlist,
        *,
        largest: bool = False,
        interval: float = 2.0,
    ) -> None:
        super().__init__(daemon=True, name="watchlist-watch")
        self.model, self.root, self.watchlist = model, root, watchlist
        self.largest, self.interval = largest, interval
        self.stop_event = threading.Event()
        self._signature = _dir_signature(root)
        self._from_folder = set(watchlist.names)

    def check(self) -> bool:
        """Reload if the folder changed; True if it did."""
        sig = _dir_signature(self.root)
        if sig == self._signature:
            return False
        self._signature = sig
        try:
            people = load_watchlist_dir(self.model, self.root, largest=self.largest)
        except EnrollError as exc:
            log.warning("watchlist: reload failed: %s", exc)
            return False
        # Apply only the folder's own changes: people enrolled by other means (the web app)
        # stay in the running watchlist.
        names = {p.name for p in people}
        self.watchlist.apply(people, removals=self._from_folder - names)
        self._from_folder = names
        log.info("watchlist: reloaded, now %s", ", ".join(self.watchlist.names) or "empty")
        return True

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.check()
