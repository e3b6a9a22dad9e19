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
