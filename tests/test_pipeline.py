"""How a run takes its stop signals (the runs themselves are tested end to end in e2e/)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from sauron.pipeline import REPEAT_SIGNAL_S, _Stopper


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_signal_delivered_twice_at_once_still_stops_cleanly(handlers: None) -> None:
    """``timeout`` sends its signal to the command and then to the command's process
    group: one request, two deliveries. The clean stop goes on."""
    stopper = _Stopper()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stopper.event.is_set()


def test_a_second_signal_later_interrupts_at_once(handlers: None) -> None:
    stopper = _Stopper()
    os.kill(os.getpid(), signal.SIGINT)
    assert stopper.event.is_set()
    time.sleep(REPEAT_SIGNAL_S + 0.2)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)  # the handler runs between bytecodes of this thread


def test_the_handlers_of_before_are_back_after_the_run(handlers: None) -> None:
    """A signal after a run (between two runs of a benchmark) is not the finished run's
    to swallow: it reaches whatever handled it before."""
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: got.append(signum))
    with _Stopper() as stopper:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stopper.event.is_set() and got == []
    os.kill(os.getpid(), signal.SIGTERM)
    assert got == [signal.SIGTERM]
