"""What a stage gives the Kafka worker: a :data:`Handler` turns an input message's value
into the :class:`Output` messages to produce, or raises :class:`Skip` to drop the input
on purpose (any other exception sends it to the dead letters, ``bus/deadletters.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sauron import SauronError


class Skip(SauronError):
    """Raised by a handler for an input it drops on purpose (e.g. a stale frame).

    The input is counted in ``sauron_frames_dropped{reason}``, its offset is committed and
    nothing goes to the dead-letter topic.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


@dataclass(frozen=True)
class Output:
    """One message a stage wants produced; ``captured_at`` feeds the latency histogram."""

    topic: str
    value: bytes | None
    key: str | bytes | None = None
    partition: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    captured_at: float | None = None


Handler = Callable[[bytes], list[Output]]
