"""The log-in limits and the bounded failure log, on their own (no server)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from sauron.serve.web.throttle import FailureLog, LoginThrottle, Throttled, client_address


def _fail(t: LoginThrottle, user: str, addr: str, n: int) -> None:
    for _ in range(n):
        t.begin(user, addr)


def test_each_limit_locks_only_its_own_scope() -> None:
    t = LoginThrottle(per_pair=3, per_address=5, per_user=7, window_s=60)
    _fail(t, "ann", "10.0.0.1", 3)
    with pytest.raises(Throttled) as exc:
        t.begin("ann", "10.0.0.1")
    assert exc.value.scope == "pair" and 1 <= exc.value.retry_after_s <= 60
    t.begin("ann", "10.0.0.2")  # ann from elsewhere: still checked
    t.begin("bob", "10.0.0.1")  # another user from that address too
    t.begin("cat", "10.0.0.1")
    with pytest.raises(Throttled, match="address"):  # 5 from 10.0.0.1 in all
        t.begin("dan", "10.0.0.1")

    # ann's total (7) over every address, except where ann logged in before
    ok = t.begin("ann", "10.0.0.9")
    t.succeeded(ok)
    _fail(t, "ann", "10.0.0.3", 3)
    with pytest.raises(Throttled, match="user"):
        t.begin("ann", "10.0.0.4")
    t.begin("ann", "10.0.0.9")  # a known address of ann's

    assert {(x.kind, x.username, x.address) for x in t.lockouts()} >= {
        ("pair", "ann", "10.0.0.1"),
        ("address", None, "10.0.0.1"),
        ("user", "ann", None),
    }
    assert t.unlock("ann") >= 4
    t.begin("ann", "10.0.0.4")
    with pytest.raises(Throttled, match="address"):  # an address's own lock stays
        t.begin("ann", "10.0.0.1")


def test_a_success_or_a_busy_server_takes_the_attempt_back() -> None:
    t = LoginThrottle(per_pair=2, per_address=100, per_user=100, window_s=60)
    for _ in range(10):
        t.cancel(t.begin("ann", "a"))  # never checked: never counted
    t.begin("ann", "a")
    t.succeeded(t.begin("ann", "a"))  # the right password clears the pair
    _fail(t, "ann", "a", 2)
    with pytest.raises(Throttled):
        t.begin("ann", "a")


def test_counters_are_bounded() -> None:
    t = LoginThrottle(per_pair=5, per_address=10**6, per_user=5, window_s=60, max_keys=100)
    for i in range(5000):
        t.begin(f"made-up-{i}", "a")
    assert len(t._fails) <= 100


def test_failure_log_writes_a_bounded_number_of_rows() -> None:
    rows: list[tuple[str, str, str, str]] = []
    log = FailureLog(lambda *row: rows.append(row), period_s=3600, immediate=3, max_keys=4)
    for i in range(100):
        log.record("login_failed", f"user{i % 10}", "10.0.0.1")
    assert len(rows) == 3, "the first failures of 3 user names, at once"
    log.flush()
    assert len(rows) == 3, "the rest wait for the end of the period"
    log.flush(force=True)
    assert len(rows) <= 3 + 4 + 1
    counts = [int(r[3].rsplit(":", 1)[1].strip(" }")) for r in rows]
    assert sum(counts) == 100, "every failure counted once"
    assert rows[-1][2] == "*", "beyond max_keys: one row for the rest"


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
    ],
)
def test_client_address_keys_ipv6_by_its_64(host: str, key: str) -> None:
    request = Request({"type": "http", "client": (host, 1234), "headers": []})
    assert client_address(request) == key
