"""The local cache: downloads and derived files kept between runs.

``$SAURON_CACHE`` when set, else ``~/.cache/sauron``: sample photos, converted models,
enrollment embeddings. Nothing in it ships with the project; all of it can be rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SAURON_CACHE``, else ``~/.cache/sauron`` (not created)."""
    return Path(os.environ.get("SAURON_CACHE") or Path.home() / ".cache" / "sauron")


def cache_dir() -> Path:
    """Where downloads are kept: $SAURON_CACHE, else ~/.cache/sauron (created if missing)."""
    path = cache_root()
    path.mkdir(parents=True, exist_ok=True)
    return path
