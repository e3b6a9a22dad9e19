"""Chunks converted and hashed on worker threads, handed back in source order.

Arrow's kernels and the ADBC reader release the GIL, so two chunks prepared at once use two cores;
what holds the GIL (a SHA-256 call a row) is a small part. At most `workers` chunks are in
preparation or waiting for the caller, so memory stays bounded by the chunk size.
"""
from __future__ import annotations

import contextvars
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

C = TypeVar("C", bound=Sized)
R = TypeVar("R")
_MAX_WORKERS = 2


def default_workers() -> int:
    return max(1, min(_MAX_WORKERS, os.cpu_count() or 1))


def prepared_in_order(chunks: Iterable[C], prepare: Callable[[C], R], workers: int) -> Iterator[tuple[int, R]]:
    """(rows in the chunk, prepare(chunk)) for each chunk, in order, as a loop would give them: an
    error of `prepare` is raised at its chunk's turn, one of `chunks` after the chunks before it."""
    if workers <= 1:
        for chunk in chunks:
            yield len(chunk), prepare(chunk)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="prepare") as pool:
        window: deque[tuple[int, Future[R]]] = deque()
        try:
            source = iter(chunks)
            while True:
                try:
                    chunk = next(source)
                except StopIteration:
                    break
                except BaseException:
                    yield from _drained(window)
                    raise
                window.append((len(chunk), pool.submit(contextvars.copy_context().run, prepare, chunk)))
                if len(window) >= workers:
                    rows, future = window.popleft()
                    yield rows, future.result()
            yield from _drained(window)
        finally:
            for _, future in window:
                future.cancel()


def _drained(window: deque[tuple[int, Future[R]]]) -> Iterator[tuple[int, R]]:
    while window:
        rows, future = window.popleft()
        yield rows, future.result()
