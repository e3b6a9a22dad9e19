"""One instance applies one table at a time. Across instances BigQuery's transactions keep loads
apart (see conflicts.py); within one, waiting is cheaper than an aborted transaction, and the
local emulator does not isolate concurrent scripts at all."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


@contextmanager
def _held(name: str) -> Iterator[None]:
    with _guard:
        lock = _locks.setdefault(name, threading.Lock())
    with lock:
        yield


def table(table_id: str) -> AbstractContextManager[None]:
    return _held(f"table:{table_id}")


def ledger(project: str, dataset: str) -> AbstractContextManager[None]:
    """Every ledger write of a dataset; taken inside `table`, never the other way round."""
    return _held(f"ledger:{project}.{dataset}")
