"""The local cache: downloads and derived files kept between runs.

``$SAURON_CACHE`` when set, else ``~/.cache/sauron``: sample photos, model weights taken
from packages of the registry, converted models, enrollment embeddings. Nothing in it
ships with the project; all of it can be rebuilt.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from sauron import SauronError

log = logging.getLogger(__name__)

_ARCHIVES = {".gz", ".whl", ".zip"}


def cache_root() -> Path:
    """``$SAURON_CACHE``, else ``~/.cache/sauron`` (not created)."""
    return Path(os.environ.get("SAURON_CACHE") or Path.home() / ".cache" / "sauron")


def cache_dir() -> Path:
    """Where downloads are kept: $SAURON_CACHE, else ~/.cache/sauron (created if missing)."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path


def pip_download(requirement: str, dest: Path, *, binary: bool) -> Path:
    """The archive of one pinned package (``name==version``) from the package registry,
    fetched once into ``dest`` with pip (no dependencies, nothing installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    existing = sorted(p for p in dest.iterdir() if p.suffix in _ARCHIVES)
    if existing:
        return existing[0]
    fmt = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *fmt, "-d", str(dest)]
    if binary:
        cmd += ["--python-version", "3.11", "--platform", "manylinux2014_x86_64"]
    log.info("fetching %s from the package registry into %s", requirement, dest)
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SauronError(f"could not download {requirement}: {proc.stderr.strip()[-500:]}")
    found = sorted(p for p in dest.iterdir() if p.suffix in _ARCHIVES)
    if not found:
        raise SauronError(f"pip download of {requirement} left no archive in {dest}")
    return found[0]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
