"""Snapshots and clips as files beside the database: the database keeps their paths.

Every file lies under one folder (``store.media_dir``; by default ``media`` in the
store's data folder), in ``<kind>/<YYYY-MM-DD>/<camera>-<random>.<ext>``, created with
mode 0600 in folders of mode 0700 (they show faces). A path read back from the database
is resolved through :meth:`MediaDir.resolve`, which refuses anything that would lead
outside the folder (an absolute path, ``..``, a link), so a tampered row can never make
the web app serve another file.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from sauron.store import StoreError

log = logging.getLogger(__name__)

KINDS = ("snapshots", "clips")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class MediaPathError(StoreError):
    """A stored media path that does not name a file inside the media folder."""


def _private_dirs(root: Path, rel: PurePosixPath) -> None:
    """Create ``root`` and each folder of ``rel`` below it with mode 0700."""
    path = root
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in rel.parts:
        path = path / part
        path.mkdir(mode=0o700, exist_ok=True)


class MediaDir:
    """The media folder of one store."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def new_path(self, kind: str, camera: str, ts: float, suffix: str) -> str:
        """A fresh relative path for a file of ``kind`` from ``camera`` taken at ``ts``; its
        folder exists (0700) afterwards."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, but got {kind!r}")
        day = time.strftime("%Y-%m-%d", time.gmtime(ts))
        slug = _UNSAFE.sub("_", camera)[:40] or "camera"
        folder = PurePosixPath(kind, day)
        _private_dirs(self.root, folder)
        return str(folder / f"{slug}-{secrets.token_hex(8)}{suffix}")

    def write(self, kind: str, camera: str, ts: float, data: bytes, suffix: str) -> str:
        """Store ``data`` as a new private file; returns its relative path."""
        rel = self.new_path(kind, camera, ts, suffix)
        path = self.root / rel
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return rel

    def resolve(self, rel: str) -> Path:
        """The file a stored relative path names; :class:`MediaPathError` for a path that
        would lead outside the media folder."""
        pure = PurePosixPath(rel)
        if (
            not rel
            or "\\" in rel
            or "\x00" in rel
            or pure.is_absolute()
            or any(p in ("..", ".", "") for p in pure.parts)
            or pure.parts[0] not in KINDS
        ):
            raise MediaPathError(f"not a media path: {rel!r}")
        path = self.root.joinpath(*pure.parts)
        real = Path(os.path.realpath(path))
        if real != path and not real.is_relative_to(os.path.realpath(self.root)):
            raise MediaPathError(f"media path {rel!r} leads outside {self.root}")
        return path

    def read(self, rel: str) -> bytes | None:
        """The file's bytes; None when it is gone (retention, or deleted by hand)."""
        try:
            fd = os.open(self.resolve(rel), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            log.warning("media: %s is in the database but not on disk", rel)
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def delete(self, rels: Iterable[str | None]) -> int:
        """Remove the files (missing ones are fine); returns how many were removed."""
        removed = 0
        for rel in rels:
            if not rel:
                continue
            try:
                self.resolve(rel).unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except (OSError, MediaPathError) as exc:
                log.warning("media: cannot remove %s: %s", rel, exc)
        return removed
