"""Parquet files encoded and uploaded in the background while the next chunk is read.

Arrow's Parquet writer, MD5 and the HTTP upload all release the GIL, so on a second core they run
beside the reading and hashing of the next chunk. The writer waits once more than `limit` files are
in flight (memory stays bounded by the chunk size); while it waits, a second thread already encodes
the newest, which after the last chunk puts its data and index parts on both cores. Results are
taken in submission order, so parts keep their order.
"""
from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from shared.manifest import Part


class BackgroundUploads:
    def __init__(self, limit: int = 1) -> None:
        self._limit = limit
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[list[Part], Future[Part]]] = deque()

    def submit(self, into: list[Part], upload: Callable[[], Part]) -> None:
        """Runs `upload` in the background; its Part is appended to `into` once settled."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._limit + 1, thread_name_prefix="snapshot-upload")
        self._pending.append((into, self._pool.submit(contextvars.copy_context().run, upload)))
        while len(self._pending) > self._limit:
            self._settle_oldest()

    def settle(self) -> None:
        """Waits for every upload; the first that failed raises here."""
        while self._pending:
            self._settle_oldest()

    def abandon(self) -> None:
        """Waits for the uploads in flight without asking how they went (the run is failing anyway),
        so a failed run leaves no upload running behind it."""
        while self._pending:
            self._pending.popleft()[1].exception()
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _settle_oldest(self) -> None:
        into, future = self._pending.popleft()
        into.append(future.result())
