"""Chunks prepared two at a time come back in source order, never more than `workers` in flight,
and errors surface where a plain loop would raise them."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared.extractor.prepare_ahead import prepared_in_order


def _chunks(count: int, fail_at: int | None = None) -> Iterator[list[int]]:
    for number in range(count):
        if number == fail_at:
            raise ConnectionResetError("source went away")
        yield [number] * (number + 1)


def test_results_come_back_in_order_whatever_finishes_first() -> None:
    def prepare(chunk: list[int]) -> int:
        time.sleep(0.02 if chunk[0] % 2 == 0 else 0)  # even chunks finish after the odd ones behind them
        return chunk[0]

    results = list(prepared_in_order(_chunks(9), prepare, workers=2))

    assert results == [(n + 1, n) for n in range(9)]


def test_the_source_is_read_at_most_workers_minus_one_chunks_ahead_of_the_caller() -> None:
    pulled = 0

    def counted() -> Iterator[list[int]]:
        nonlocal pulled
        for chunk in _chunks(12):
            pulled += 1
            yield chunk

    ahead = []
    for taken, _ in enumerate(prepared_in_order(counted(), lambda chunk: chunk[0], workers=2), start=1):
        ahead.append(pulled - taken)
    assert max(ahead) == 1 and len(ahead) == 12  # memory: the chunk handed over plus one in preparation


def test_a_source_error_comes_after_the_chunks_read_before_it() -> None:
    seen: list[int] = []
    with pytest.raises(ConnectionResetError):
        for _, first in prepared_in_order(_chunks(6, fail_at=4), lambda chunk: chunk[0], workers=2):
            seen.append(first)
    assert seen == [0, 1, 2, 3]


def test_a_prepare_error_is_raised_at_its_chunks_turn() -> None:
    def prepare(chunk: list[int]) -> int:
        if chunk[0] == 2:
            raise ValueError("bad chunk")
        return chunk[0]

    seen: list[int] = []
    with pytest.raises(ValueError, match="bad chunk"):
        for _, first in prepared_in_order(_chunks(6), prepare, workers=2):
            seen.append(first)
    assert seen == [0, 1]


def test_one_worker_is_a_plain_loop() -> None:
    assert list(prepared_in_order(_chunks(3), lambda chunk: sum(chunk), workers=1)) == [(1, 0), (2, 2), (3, 6)]
