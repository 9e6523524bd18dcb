"""Logging set-up shared by the command line and every process it starts.

Worker processes are spawned fresh (no inherited handlers), so each one calls
:func:`setup_logging` first thing; the level comes from the argument or from
``SAURON_LOG_LEVEL`` (INFO when unset).

Camera URLs carry credentials (``rtsp://user:password@host/...``): every line goes through
:func:`redact`, so no password reaches a log, whatever module wrote it.
"""

from __future__ import annotations

import logging
import os
import re
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


#: ``scheme://user:password@``: the password runs to the last ``@`` before the path
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*):[^/\s'\"]*@")
#: ``?password=...`` and the like, as some HTTP cameras take them
_QUERY_SECRET = re.compile(
    r"(?i)(?P<head>[?&](?:password|passwd|pwd|pass|token|auth|key|secret)=)[^&#\s'\"]*"
)
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with the passwords of the URLs in it replaced by ``***`` (user names and
    hosts are kept: they say which camera it is)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{REDACTED}", text)


class RedactingFormatter(logging.Formatter):
    """The standard formatter, with :func:`redact` applied to the whole line (message,
    arguments and traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str | None = None) -> None:
    """Send every logger's records to stderr, one line each, at ``level``."""
    logging.basicConfig(
        level=(level or os.environ.get("SAURON_LOG_LEVEL", "INFO")).upper(),
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.setFormatter(RedactingFormatter(LOG_FORMAT))
