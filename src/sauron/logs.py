"""Logging set-up shared by the command line and every process it starts.

Worker processes are spawned fresh (no inherited handlers), so each one calls
:func:`setup_logging` first thing; the level comes from the argument or from
``SAURON_LOG_LEVEL`` (INFO when unset).
"""

from __future__ import annotations

import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Send every logger's records to stderr, one line each, at ``level``."""
    logging.basicConfig(
        level=(level or os.environ.get("SAURON_LOG_LEVEL", "INFO")).upper(),
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
