"""A worker process's life: it stops cleanly on SIGTERM/SIGINT, or once its parent is gone.

Both set the worker's stop event; the worker then finishes its current batch, commits and
leaves its consumer group (see :mod:`sauron.bus.worker`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)

#: Deaths of worker processes counted against ``bus.max_restarts`` within this many seconds.
RESTART_WINDOW_S = 60.0


def stop_on_signals(event: Any) -> None:
    """SIGTERM/SIGINT set ``event`` (the worker finishes its batch and leaves the group)."""

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch and leaving the group", signum)
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def watch_parent(parent: int, event: threading.Event) -> None:
    """Stop cleanly once the process that spawned us is gone (killed without cleanup)."""

    def watch() -> None:
        while not event.wait(1.0):
            if os.getppid() != parent:
                log.warning("parent process %d is gone: stopping", parent)
                event.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def describe_exit(code: int | None) -> str:
    """``exit code 1``, ``killed by signal 9 (SIGKILL)``, from a Process's exitcode."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"
