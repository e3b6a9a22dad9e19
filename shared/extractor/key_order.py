"""What a delta's merge join reports: per chunk the rows to ship and the keys gone, or that the keys
are not in the order it relies on (then the run takes a full snapshot instead)."""
from __future__ import annotations

from dataclasses import dataclass


class KeyOrderError(RuntimeError):
    """The key stream is not strictly increasing in the order the merge join relies on."""


@dataclass
class ChunkDiff:
    changed: list[int]                       # positions in the chunk of new or changed rows
    deleted: list[tuple[tuple, str]]         # (key values, key hash) gone from the source


class KeyOrder:
    """Asserts a stream of keys is strictly increasing."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last: tuple | None = None

    def check(self, key: tuple) -> None:
        try:
            ordered = self._last is None or key > self._last
        except TypeError:
            ordered = False
        if not ordered:
            raise KeyOrderError(f"{self._what} keys out of order: {self._last!r} then {key!r}")
        self._last = key
