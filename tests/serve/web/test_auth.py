"""``StillAuthorized``: how a long-lived stream re-checks the token that opened it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from sauron.serve.web.auth import StillAuthorized


class Accounts:
    """Answers ``authenticate`` from a list of outcomes: a principal, None, or raises."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.asked: list[str] = []

    def authenticate(self, token: str) -> Any:
        self.asked.append(token)
        got = self.outcomes.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


def _check(accounts: Accounts, every: float, calls: int) -> list[bool]:
    request = SimpleNamespace(state=SimpleNamespace(token="t0k"))
    check = StillAuthorized(request, SimpleNamespace(accounts=accounts), every=every)  # type: ignore[arg-type]

    async def run() -> list[bool]:
        return [await check() for _ in range(calls)]

    return asyncio.run(run())


def test_the_token_is_looked_up_at_most_every_period() -> None:
    accounts = Accounts("alice")
    assert _check(accounts, every=3600, calls=5) == [True] * 5
    assert accounts.asked == []  # the opening request already checked it


def test_a_token_that_stops_working_ends_the_stream_for_good() -> None:
    accounts = Accounts("alice", None, "alice")
    assert _check(accounts, every=0, calls=4) == [True, False, False, False]
    assert accounts.asked == ["t0k", "t0k"]  # not asked again once refused


def test_a_store_that_fails_ends_the_stream_instead_of_raising() -> None:
    accounts = Accounts(RuntimeError("the database is closed"))
    assert _check(accounts, every=0, calls=2) == [False, False]
