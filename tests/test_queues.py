"""The bounded latest-wins queue: drops the oldest when full, counts it, wakes readers."""

from __future__ import annotations

import threading

import pytest

from sauron.queues import Empty, LatestQueue, QueueClosed


def test_items_come_out_oldest_first() -> None:
    q: LatestQueue[int] = LatestQueue(3)
    assert [q.put(n) for n in (1, 2, 3)] == [[], [], []]
    assert len(q) == 3 and q.full
    assert [q.get(timeout=0) for _ in range(3)] == [1, 2, 3]
    assert len(q) == 0 and not q.full and q.dropped == 0


def test_a_full_queue_drops_the_oldest_hands_it_back_and_counts_it() -> None:
    q: LatestQueue[str] = LatestQueue(2)
    q.put("a")
    q.put("b")
    assert q.put("c") == ["a"]
    assert q.put("d") == ["b"]
    assert q.dropped == 2
    assert [q.get(timeout=0), q.get(timeout=0)] == ["c", "d"]


def test_a_queue_of_one_keeps_only_the_newest() -> None:
    q: LatestQueue[int] = LatestQueue(1)
    for n in range(5):
        q.put(n)
    assert (q.get(timeout=0), q.dropped) == (4, 4)


def test_get_raises_empty_when_nothing_came_in_time() -> None:
    q: LatestQueue[int] = LatestQueue(1)
    with pytest.raises(Empty):
        q.get(timeout=0)
    with pytest.raises(Empty):
        q.get(timeout=0.05)


def test_a_blocked_get_wakes_when_another_thread_puts() -> None:
    q: LatestQueue[int] = LatestQueue(4)
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.append(q.get(timeout=30)))
    reader.start()
    q.put(7)
    reader.join(30)
    assert got == [7]


def test_closing_lets_readers_drain_then_raises_and_refuses_new_items() -> None:
    q: LatestQueue[int] = LatestQueue(4)
    q.put(1)
    q.close()
    assert q.closed
    assert q.put(2) == [2] and q.dropped == 1  # refused: handed back, counted
    assert q.get(timeout=0) == 1
    with pytest.raises(QueueClosed):
        q.get(timeout=0)


def test_closing_wakes_a_blocked_reader() -> None:
    q: LatestQueue[int] = LatestQueue(4)
    raised: list[BaseException] = []

    def read() -> None:
        try:
            q.get()
        except QueueClosed as exc:
            raised.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    q.close()
    reader.join(30)
    assert not reader.is_alive() and len(raised) == 1


def test_peek_leaves_the_item_and_discard_takes_it_only_if_still_oldest() -> None:
    q: LatestQueue[list[int]] = LatestQueue(2)
    first, second, third = [1], [2], [3]
    q.put(first)
    assert q.peek(timeout=0) is first and len(q) == 1
    assert q.discard(first) and len(q) == 0
    q.put(first)
    q.put(second)
    q.put(third)  # pushes ``first`` out while it is being sent
    assert not q.discard(first)
    assert q.peek(timeout=0) is second and len(q) == 2


def test_many_writers_and_a_reader_lose_nothing_but_the_counted() -> None:
    q: LatestQueue[int] = LatestQueue(8)
    writers, per_writer = 4, 2000
    taken: list[int] = []
    handed_back: list[int] = []
    lock = threading.Lock()

    def write(base: int) -> None:
        for n in range(per_writer):
            out = q.put(base + n)
            with lock:
                handed_back.extend(out)

    def read() -> None:
        while True:
            try:
                taken.append(q.get(timeout=30))
            except QueueClosed:
                return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w * per_writer,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    q.close()
    reader.join(60)
    assert q.dropped == len(handed_back)
    assert sorted(taken + handed_back) == list(range(writers * per_writer))
    for w in range(writers):  # each writer's items come out in the order it put them
        mine = [n for n in taken if w * per_writer <= n < (w + 1) * per_writer]
        assert mine == sorted(mine)


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="maxsize must be at least 1, but got 0"):
        LatestQueue(0)
