"""Checking uploaded photos and keeping running matchers in step with the store.

A photo is refused, with the reason, when it is too large (bytes, or pixels as its header
says, read before any pixel is decoded), not an image, corrupt, or holds no face, several
faces, or a face too small to be useful (the checks of :mod:`sauron.match.enroll`). An
accepted photo is stored re-encoded as JPEG (upright, at most 1024 px, no EXIF), never as
the bytes that were sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sauron.codec import Person as WirePerson
from sauron.config import Settings
from sauron.imaging import ImageDecodeError, encode_jpeg, image_size, resize_max_width
from sauron.match.enroll import (
    EnrollError,
    enrollment_embedding,
    load_photo,
    photo_embedding,
    photo_upsample,
)
from sauron.match.watchlist import Watchlist
from sauron.store.db import NewPhoto, Store

if TYPE_CHECKING:
    from sauron.detect.models import FaceModel

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
STORED_PHOTO_WIDTH = 1024


def safe_filename(name: str | None) -> str:
    """A display name for an uploaded file: no directories, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKC", base)
    base = _UNSAFE.sub("_", base).strip(" .")[:100]
    return base or "photo"


def derive_id(display_name: str) -> str:
    """An id for a person from the name as written: letters without their accents,
    lower case, words joined by '-' ("José García" -> "jose-garcia"); a name with no
    Latin letter or digit gets "person-" and a hash of it."""
    plain = unicodedata.normalize("NFKD", display_name)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower().encode("ascii", "ignore").decode())
    slug = slug.strip("-")[:64].rstrip("-")
    if not slug:
        slug = "person-" + hashlib.sha256(display_name.encode()).hexdigest()[:8]
    return slug


def clean_display_name(value: str) -> str:
    """A name as people write it: any letters, spaces, marks; trimmed, inner spaces
    collapsed, 1-128 characters, no control or invisible formatting characters."""
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise ValueError("the name is empty")
    if len(text) > 128:
        raise ValueError(f"the name is {len(text)} characters long; at most 128")
    bad = sorted({c for c in text if unicodedata.category(c).startswith("C")})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ValueError(f"the name holds control or formatting characters ({codes})")
    if not any(c.isalnum() for c in text):
        raise ValueError("the name needs at least one letter or digit")
    return text


def check_free_text(value: str, what: str) -> str:
    """Notes, reasons, token names: any text, lines and tabs, but no other control or
    invisible formatting character (a right-to-left override, a zero-width space, NUL:
    what makes a text show other than it reads, or a database refuse it)."""
    bad = sorted({c for c in value if unicodedata.category(c).startswith("C") and c not in "\n\t"})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ValueError(f"{what} holds control or formatting characters ({codes})")
    return value


class Enroller:
    """Turns uploaded bytes into a checked :class:`NewPhoto` (loads the models lazily).

    Safe to call from many threads at once (each model call holds that model's lock), and
    a photo the pipeline already embedded (the watchlist folder) is not embedded again.
    """

    def __init__(self, settings: Settings, max_photo_bytes: int) -> None:
        self.embedder = settings.detect.embedder
        self.max_photo_bytes = max_photo_bytes
        self.max_megapixels = settings.web.max_photo_megapixels
        self.work_pixels = int(settings.web.photo_work_megapixels * 1_000_000)
        self._lock = threading.Lock()
        self._model: FaceModel | None = None

    def model(self) -> FaceModel:
        with self._lock:
            if self._model is None:
                from sauron.detect.models import FaceModel

                self._model = FaceModel(detector="dlib-hog", embedder=self.embedder)
            return self._model

    def embedding(
        self, data: bytes, source: str, *, largest: bool = False, remember: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(upright RGB image, 128-d embedding) of the one face in a photo. ``remember``:
        keep the embedding in the enrollment cache (not for a search: a flood of photos
        would fill the disk)."""
        if len(data) > self.max_photo_bytes:
            raise EnrollError(
                f"{source}: the file is too large ({len(data)} bytes, the "
                f"limit is {self.max_photo_bytes})"
            )
        try:
            width, height = image_size(data)
        except ImageDecodeError as exc:
            raise EnrollError(f"{source}: {exc}") from None
        if width * height > self.max_megapixels * 1_000_000:
            raise EnrollError(
                f"{source}: the photo is too large ({width}x{height} pixels, "
                f"{width * height / 1e6:.1f} megapixels; the limit is "
                f"{self.max_megapixels:g} megapixels)"
            )
        rgb = load_photo(data, source, max_pixels=self.work_pixels)
        model = self.model()
        if remember:
            emb = enrollment_embedding(model, data, largest=largest, source=source, rgb=rgb)
        else:
            sized = model.with_upsample(photo_upsample(rgb))
            emb = photo_embedding(sized, rgb, largest=largest, source=source)
        return rgb, np.asarray(emb, np.float32)

    def check(self, data: bytes, filename: str | None, *, largest: bool = False) -> NewPhoto:
        """The photo checked and embedded; ``largest``: of several faces, take the largest."""
        name = safe_filename(filename)
        rgb, emb = self.embedding(data, name, largest=largest)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        small = resize_max_width(bgr, STORED_PHOTO_WIDTH)
        return NewPhoto(
            filename=name,
            content_type="image/jpeg",
            data=encode_jpeg(np.ascontiguousarray(small), 90),
            embedding=emb,
            width=int(small.shape[1]),
            height=int(small.shape[0]),
        )


class WatchlistSync:
    """Pushes store changes to every running matcher.

    Embedded: the pipeline's in-memory :class:`Watchlist` objects (attached by the
    pipeline hook). Kafka: the compacted watchlist topic every matcher follows.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.kafka = settings.bus.type == "kafka"
        self._lock = threading.Lock()
        self._local: list[Watchlist] = []

    def attach(self, watchlist: Watchlist) -> None:
        """A running embedded matcher's watchlist: fill it from the store, keep it in step."""
        with self._lock:
            self._local.append(watchlist)
        self.reconcile()

    def reconcile(self) -> None:
        """Add store people missing from attached watchlists (e.g. after a folder reload)."""
        with self._lock:
            local = list(self._local)
        if not local:
            return
        people = self.store.wire_people()
        for wl in local:
            have = set(wl.names)
            for p in people:
                if p.name not in have:
                    wl.upsert(p)

    def upsert(self, person: WirePerson) -> None:
        if self.kafka:
            from sauron.match.watchlist_topic import publish_person

            publish_person(self.settings, person, person.name)
        with self._lock:
            for wl in self._local:
                wl.upsert(person)

    def remove(self, name: str) -> None:
        if self.kafka:
            from sauron.match.watchlist_topic import publish_person

            publish_person(self.settings, None, name)
        with self._lock:
            for wl in self._local:
                wl.remove(name)
        folder = self.settings.match.watchlist
        if folder is not None and (Path(folder) / name).is_dir():
            from sauron.match.enroll import remove_from_dir

            remove_from_dir(Path(folder), name)  # or the folder watcher would bring it back

    def publish_all(self) -> None:
        """Kafka: (re)announce every stored person, e.g. at start-up."""
        if self.kafka:
            for p in self.store.wire_people():
                self.upsert(p)


def import_watchlist_dir(store: Store, enroller: Enroller, root: Path) -> list[str]:
    """Copy people of a watchlist folder that the store lacks into the store."""
    from sauron.match.enroll import person_photos

    added = []
    have = {p.name for p in store.list_people()}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        if folder.name in have:
            continue
        photos = []
        for path in person_photos(folder):
            try:
                photos.append(enroller.check(path.read_bytes(), path.name))
            except (EnrollError, OSError) as exc:
                log.warning("watchlist import: skipping %s: %s", path, exc)
        if photos:
            try:
                store.add_person(folder.name, photos)
                added.append(folder.name)
            except Exception as exc:  # a name the store refuses; keep importing the rest
                log.warning("watchlist import: %s not imported: %s", folder.name, exc)
    return added
