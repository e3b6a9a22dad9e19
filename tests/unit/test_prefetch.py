"""`shared.extractor.prefetch.prefetched`: the same items in order, the reader's error raised to the
consumer, an early stop closing the reader's iterator, and never more than two items alive."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.extractor.prefetch import prefetched


class Chunks:
    """Counts how many items were produced and not yet released by the consumer."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.alive = 0
        self.most_alive = 0
        self.closed = False
        self.lock = threading.Lock()

    def __call__(self) -> Iterator[int]:
        try:
            for number in range(self.count):
                if number == self.fail_at:
                    raise ConnectionResetError("source went away")
                with self.lock:
                    self.alive += 1
                    self.most_alive = max(self.most_alive, self.alive)
                yield number
        finally:
            self.closed = True

    def release(self) -> None:
        with self.lock:
            self.alive -= 1


def test_items_arrive_in_order_with_at_most_two_alive() -> None:
    chunks = Chunks(50)
    seen = []
    with prefetched(chunks) as items:
        for item in items:
            seen.append(item)
            chunks.release()
    assert seen == list(range(50)) and chunks.closed
    assert chunks.most_alive <= 2


def test_the_readers_error_is_raised_to_the_consumer_after_the_items_before_it() -> None:
    chunks = Chunks(10, fail_at=3)
    seen = []
    with pytest.raises(ConnectionResetError, match="source went away"):
        with prefetched(chunks) as items:
            for item in items:
                seen.append(item)
    assert seen == [0, 1, 2] and chunks.closed


def test_stopping_early_closes_the_readers_iterator_and_ends_its_thread() -> None:
    chunks = Chunks(1000)
    before = threading.active_count()
    with prefetched(chunks) as items:
        for item in items:
            if item == 2:
                break
    assert chunks.closed and threading.active_count() == before


def test_the_reader_starts_before_the_first_item_is_asked_for() -> None:
    started = threading.Event()

    def chunks() -> Iterator[int]:
        started.set()
        yield from range(3)

    with prefetched(chunks) as items:
        assert started.wait(timeout=5)  # the caller's set-up overlaps the source's first read
        assert list(items) == [0, 1, 2]


def test_leaving_before_taking_anything_stops_the_reader_and_closes_its_iterator() -> None:
    chunks = Chunks(1000)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="set-up failed"), prefetched(chunks):
        raise RuntimeError("set-up failed")
    assert chunks.closed and threading.active_count() == before
    assert chunks.most_alive <= 1
