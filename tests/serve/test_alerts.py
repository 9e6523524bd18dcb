"""The broadcaster: every page gets each alert; a slow page loses its oldest, never
holds up the others."""

from __future__ import annotations

import asyncio
import threading

from sauron.serve.alerts import Broadcaster


def test_events_from_another_thread_reach_every_subscriber_in_order() -> None:
    async def main() -> tuple[list[int], list[int]]:
        hub = Broadcaster(queue_size=10)
        first, second = hub.subscribe(), hub.subscribe()
        sender = threading.Thread(target=lambda: [hub.publish({"n": n}) for n in range(5)])
        sender.start()
        got_first = [(await asyncio.wait_for(first.get(), 30))["n"] for _ in range(5)]
        got_second = [(await asyncio.wait_for(second.get(), 30))["n"] for _ in range(5)]
        sender.join(30)
        return got_first, got_second

    assert asyncio.run(main()) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])


def test_a_slow_subscriber_keeps_only_the_newest_events() -> None:
    async def main() -> tuple[list[int], int]:
        hub = Broadcaster(queue_size=2)
        sub = hub.subscribe()
        for n in range(5):  # nobody reads meanwhile
            hub.publish({"n": n})
        got = [(await asyncio.wait_for(sub.get(), 30))["n"] for _ in range(2)]
        return got, sub.events.dropped

    assert asyncio.run(main()) == ([3, 4], 3)


def test_a_subscriber_whose_loop_closed_is_forgotten() -> None:
    hub = Broadcaster()

    async def subscribe() -> None:
        hub.subscribe()

    asyncio.run(subscribe())  # the loop closes with its subscriber still listed
    assert hub.subscribers == 1
    hub.publish({"n": 1})
    assert hub.subscribers == 0
