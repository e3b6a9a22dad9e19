"""Segment checksums over `_key_hash` prefixes: finding the few differing rows of two large sides
without moving either side.

A segment is the set of rows whose key hash starts with a given hex prefix. Both sides compute,
per segment, the table fingerprint of `shared.hashing` (count, XOR of 60 bits, sum of 32 bits of the
row hashes); equal segments are skipped, differing ones are split 16 ways and compared again, and
small differing segments are fetched row by row. The first level is as deep as the table's size
allows (`first_depth`: about LEAF_ROWS rows a segment), so a table with few differences needs one
segment query, not one a level. Hash prefixes order the same everywhere (hex
digits), so no collation question arises between SQL Server, Python and BigQuery, and segments are
balanced because hashes are uniform.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.cloud import bigquery

from shared.hashing import TableFingerprint, fingerprint_sql

MAX_DEPTH = 4          # 16**4 = 65,536 leaf segments at most held in memory per side
LEAF_ROWS = 256        # a differing segment this small is fetched instead of split
_HEX = "0123456789abcdef"

Segments = dict[str, TableFingerprint]
SideLevel = Callable[[int, list[str] | None], Segments]


def first_depth(rows: int, *, max_depth: int = MAX_DEPTH, leaf_rows: int = LEAF_ROWS) -> int:
    """The shallowest depth whose segments hold at most `leaf_rows` rows on average (`max_depth` at
    most): the level a drill-down starts at, so differing segments there are small enough to fetch."""
    depth = 1
    while depth < max_depth and rows > leaf_rows * 16**depth:
        depth += 1
    return depth


def segment_sql(table_sql: str, *, key_hash: str, row_hash: str, depth: int, parents: list[str] | None,
                extra: str = "") -> tuple[str, list[bigquery.ArrayQueryParameter]]:
    """Per-segment fingerprints at `depth` hex digits of `key_hash` over `table_sql` (a quoted table
    or a parenthesised subquery), restricted to children of `parents` when given; `extra` adds
    aggregate expressions (with their aliases) to each segment's row.

    `key_hash`/`row_hash` are backtick-quoted column names."""
    if not 1 <= depth <= 32:
        raise ValueError(f"segment depth must be 1..32, got {depth}")
    where, params = "", []
    if parents is not None:
        where = f" WHERE SUBSTR({key_hash}, 1, {depth - 1}) IN UNNEST(@parents)"
        params = [bigquery.ArrayQueryParameter("parents", "STRING", sorted(parents))]
    more = f", {extra}" if extra else ""
    sql = (f"SELECT SUBSTR({key_hash}, 1, {depth}) AS segment, {fingerprint_sql(row_hash)}{more} "
           f"FROM {table_sql}{where} GROUP BY segment")
    return sql, params


def rows_to_segments(rows: Iterable[Any]) -> Segments:
    return {str(r["segment"]): TableFingerprint(int(r["row_count"]), int(r["xor60"]), int(r["sum32"]))
            for r in rows}


class SegmentIndex:
    """One side's segment fingerprints at `depth` hex digits, built a batch of hashes at a time
    (the source side of `compare-keys`): three numpy arrays of 16**depth entries, no Python object
    per row or per segment until a level is asked for."""

    def __init__(self, depth: int = MAX_DEPTH) -> None:
        if not 1 <= depth <= 8:
            raise ValueError(f"index depth must be 1..8, got {depth}")
        self.depth = depth
        self.rows = 0
        self._count = np.zeros(16**depth, np.int64)
        self._xor60 = np.zeros(16**depth, np.uint64)
        self._sum32 = np.zeros(16**depth, np.uint64)

    def add(self, key_hash: str, row_hash: str) -> None:
        self.add_many([key_hash], [row_hash])

    def add_many(self, key_hashes: Sequence[str], row_hashes: Sequence[str]) -> None:
        """Rows given as their key hashes and row hashes (32 hex digits each), in the same order."""
        if len(key_hashes) != len(row_hashes):
            raise ValueError(f"{len(key_hashes)} key hashes for {len(row_hashes)} row hashes")
        if not key_hashes:
            return
        keys, rows = _leading_words(key_hashes), _leading_words(row_hashes)
        segment = (keys[:, 0] >> np.uint64(64 - 4 * self.depth)).astype(np.intp)
        np.add.at(self._count, segment, 1)
        np.bitwise_xor.at(self._xor60, segment, rows[:, 0] >> np.uint64(4))
        np.add.at(self._sum32, segment, (rows[:, 1] >> np.uint64(4)) & np.uint64(0xFFFFFFFF))
        self.rows += len(key_hashes)

    def level(self, depth: int, parents: list[str] | None = None) -> Segments:
        """Fingerprints at `depth` digits, merged from the leaves, optionally under `parents`."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must be 1..{self.depth}, got {depth}")
        width = 16 ** (self.depth - depth)
        counts = self._count.reshape(-1, width).sum(axis=1)
        xors = np.bitwise_xor.reduce(self._xor60.reshape(-1, width), axis=1)
        sums = self._sum32.reshape(-1, width).sum(axis=1, dtype=np.uint64)
        wanted = None if parents is None else set(parents)
        out: Segments = {}
        for i in np.flatnonzero(counts).tolist():
            prefix = f"{i:0{depth}x}"
            if wanted is None or prefix[: depth - 1] in wanted:
                out[prefix] = TableFingerprint(int(counts[i]), int(xors[i]), int(sums[i]))
        return out


def _leading_words(hashes: Sequence[str]) -> np.ndarray:
    """(n, 2) big-endian uint64: hex digits 1-16 and 9-24 of each 32-digit hash."""
    joined = "".join(hashes)
    if len(joined) != 32 * len(hashes):
        raise ValueError("every hash must be 32 hex digits")
    raw = np.frombuffer(bytes.fromhex(joined), np.uint8).reshape(-1, 16)
    return np.stack([raw[:, :8].copy().view(">u8").ravel(), raw[:, 4:12].copy().view(">u8").ravel()], axis=1)


def differing(a: Segments, b: Segments) -> list[str]:
    """Segments whose fingerprints differ, including segments present on one side only."""
    empty = TableFingerprint()
    return sorted(p for p in a.keys() | b.keys() if a.get(p, empty) != b.get(p, empty))


@dataclass
class Drill:
    """What a drill-down found: the differing segments to fetch and how many levels it took."""

    leaves: list[str]
    levels: int
    compared_segments: int


def drill(left: SideLevel, right: SideLevel, *, max_depth: int = MAX_DEPTH, leaf_rows: int = LEAF_ROWS,
          on_level: Callable[[int, int], None] | None = None, start_depth: int = 1) -> Drill:
    """Compares two sides level by level from `start_depth` (every segment there), descending only
    into differing segments.

    A differing segment becomes a leaf (to be fetched row by row) when neither side holds more than
    `leaf_rows` rows in it or `max_depth` is reached."""
    if not 1 <= start_depth <= max_depth:
        raise ValueError(f"start depth must be 1..{max_depth}, got {start_depth}")
    parents: list[str] | None = None
    leaves: list[str] = []
    compared = 0
    depth = start_depth
    levels = 0
    while True:
        a, b = left(depth, parents), right(depth, parents)
        levels += 1
        compared += len(a.keys() | b.keys())
        found = differing(a, b)
        if on_level:
            on_level(depth, len(found))
        empty = TableFingerprint()
        split = [p for p in found
                 if depth < max_depth and max(a.get(p, empty).count, b.get(p, empty).count) > leaf_rows]
        leaves += [p for p in found if p not in set(split)]
        if not split:
            return Drill(sorted(leaves), levels, compared)
        parents, depth = split, depth + 1


def is_hex_prefix(segment: object) -> bool:
    return isinstance(segment, str) and bool(segment) and all(ch in _HEX for ch in segment)


def prefix_condition(column: str, prefixes: list[str]) -> tuple[str, list[bigquery.ArrayQueryParameter]]:
    """A WHERE condition selecting rows whose `column` starts with one of `prefixes` (any lengths)."""
    by_length: dict[int, list[str]] = {}
    for prefix in prefixes:
        if not is_hex_prefix(prefix):
            raise ValueError(f"not a hex prefix: {prefix!r}")
        by_length.setdefault(len(prefix), []).append(prefix)
    if not by_length:
        return "FALSE", []
    conditions, params = [], []
    for i, (length, values) in enumerate(sorted(by_length.items())):
        conditions.append(f"SUBSTR({column}, 1, {length}) IN UNNEST(@prefixes_{i})")
        params.append(bigquery.ArrayQueryParameter(f"prefixes_{i}", "STRING", sorted(values)))
    return "(" + " OR ".join(conditions) + ")", params
