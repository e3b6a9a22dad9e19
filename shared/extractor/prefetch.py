"""Reading the next chunk from the source while the current one is converted and hashed.

The DBAPI drivers release the GIL while they wait for the database, and Arrow's kernels while they
compute, so the reader thread and the hashing thread overlap on a second core. The reader hands a
chunk over and reads the next only once it was taken: at most two chunks in memory, the one being
prepared and the one being read.
"""
from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.engine import Engine

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextlib.contextmanager
def prefetched(items: Callable[[], Iterator[T]]) -> Iterator[Iterator[T]]:
    """The items of `items()`, produced one ahead on a reader thread that starts at once (with the
    caller's context, so log labels carry over): the source is queried while the caller still sets
    up. An error of the reader is raised from the items; on leaving, early or not, the reader is
    told to stop and joined, which closes its iterator (and cursor)."""
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Hands `item` over and waits until the consumer took it (or stopped)."""
        handoff.put(item)  # never blocks: the previous item was taken
        while not stop.is_set():
            if taken.acquire(timeout=_POLL_S):
                return True
        return False

    def read() -> None:
        iterator = items()
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as error:  # handed to the consumer, who raises it
            offer(_Failed(error))
        finally:
            _close(iterator)

    def consume() -> Iterator[T]:
        while True:
            item = handoff.get()
            taken.release()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]

    reader = threading.Thread(target=contextvars.copy_context().run, args=(read,), name="source-reader", daemon=True)
    reader.start()
    try:
        yield consume()
    finally:
        stop.set()
        reader.join()


@contextlib.contextmanager
def read_ahead(engine: Engine, chunks: Callable[[], Iterator[T]]) -> Iterator[Iterator[T]]:
    """The chunks read one ahead on a thread (see `prefetched`); not for an in-memory SQLite
    database, whose pool gives each thread a connection (and so a database) of its own."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        iterator = chunks()
        try:
            yield iterator
        finally:
            _close(iterator)
        return
    with prefetched(chunks) as items:
        yield items


def _close(iterator: Iterator[object]) -> None:
    """Closes a generator (and so the cursor it holds); other iterators have nothing to close."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()
