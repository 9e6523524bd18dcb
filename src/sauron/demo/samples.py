"""Sample face photos fetched from the package registry into a local cache.

No third-party photo ships with the project: the face_recognition 1.3.0 source
distribution on PyPI carries a few test photos (public figures), and scikit-image's wheel
carries the public-domain ``astronaut.png``. Both are downloaded once with pip and read
straight out of the archives.
"""

from __future__ import annotations

import logging
import tarfile
import zipfile
from pathlib import Path

from sauron import SauronError
from sauron.cache import CacheLock, cache_dir, cached_file, pip_download, write_atomic

log = logging.getLogger(__name__)

FACE_RECOGNITION_SDIST = "face_recognition==1.3.0"
SKIMAGE_WHEEL = "scikit-image==0.24.0"
PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")


def sample_photos() -> dict[str, Path]:
    """Return {file name: path} of the face_recognition test photos, fetching them once."""
    out = cache_dir() / "photos"
    if all((out / name).exists() for name in PHOTOS):
        return {name: out / name for name in PHOTOS}
    archive = pip_download(FACE_RECOGNITION_SDIST, cache_dir() / "sdist", binary=False)
    with CacheLock(out / "face_recognition"), tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/tests/test_images/" in member.name and name in PHOTOS and member.isfile():
                src = tar.extractfile(member)
                if src is not None and not (out / name).exists():
                    write_atomic(out / name, src.read())
    missing = [n for n in PHOTOS if not (out / n).exists()]
    if missing:
        raise SauronError(f"{archive.name} did not contain the photos {missing}")
    return {name: out / name for name in PHOTOS}


def astronaut_photo() -> Path:
    """Return the path of scikit-image's public-domain astronaut.png, fetching it once."""

    def extract() -> bytes:
        wheel = pip_download(SKIMAGE_WHEEL, cache_dir() / "skimage", binary=True)
        with zipfile.ZipFile(wheel) as zf:
            return zf.read("skimage/data/astronaut.png")

    return cached_file(cache_dir() / "photos" / "astronaut.png", extract)
