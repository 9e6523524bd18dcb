"""The alert webhook against a real HTTP server on loopback: retries with back-off on
5xx, no retry on a refusal, a bounded queue that drops (and counts) its oldest."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sauron.bus.client import wait_until
from sauron.record.alerts import AlertDispatcher, Webhook


class Receiver:
    """An HTTP server that answers POSTs with the scripted statuses (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], Receiver]]:
    made: list[Receiver] = []

    def make(statuses: list[int]) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_a_failing_server_gets_the_alert_again_after_a_back_off(
    receiver: Callable[[list[int]], Receiver],
) -> None:
    rx = receiver([503, 502])
    hook = Webhook(rx.url, backoff_s=0.05)
    alerts = AlertDispatcher(webhook=hook)
    hook.start()
    alerts.publish({"id": 7, "person": "obama", "camera": "lobby"})
    alerts.close()
    assert (hook.sent, hook.failed) == (1, 0)
    assert [b["id"] for b in rx.bodies] == [7, 7, 7], "tried three times"
    assert rx.bodies[0] == {"v": 1, "type": "alert", "id": 7, "person": "obama", "camera": "lobby"}


def test_a_refusal_is_not_retried(
    receiver: Callable[[list[int]], Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    rx = receiver([400])
    hook = Webhook(rx.url, backoff_s=0.05)
    hook.start()
    hook.submit({"id": 1})
    hook.submit({"id": 2})
    hook.stop()
    hook.join(10)
    assert [b["id"] for b in rx.bodies] == [1, 2]
    assert (hook.sent, hook.failed) == (1, 1)
    assert "refused with HTTP 400" in caplog.text


def test_an_unreachable_url_is_given_up_after_the_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = Receiver([])
    url = gone.url
    gone.close()  # nothing listens there any more
    hook = Webhook(url, retries=2, backoff_s=0.05, timeout_s=2)
    hook.start()
    hook.submit({"id": 3})
    hook.stop()
    hook.join(10)
    assert (hook.sent, hook.failed) == (0, 1)
    assert caplog.text.count("attempt") == 3 and "alert 3 not delivered" in caplog.text


def test_a_full_queue_drops_the_oldest_alert_and_says_so(
    receiver: Callable[[list[int]], Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "sauron.record.alerts")
    rx = receiver([])
    hook = Webhook(rx.url, queue_size=2)
    for n in range(1, 4):  # not started yet: the queue fills
        hook.submit({"id": n})
    assert hook.failed == 1 and "the oldest (1) is dropped" in caplog.text
    hook.start()
    assert wait_until(lambda: hook.sent == 2, 10)
    assert [b["id"] for b in rx.bodies] == [2, 3]
    hook.stop()
    hook.join(10)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Webhook("ftp://example.org/hook")
