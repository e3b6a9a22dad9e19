"""Segment checksums over `_key_hash` prefixes: finding the few differing rows of two large sides
without moving either side.

A segment is the set of rows whose key hash starts with a given hex prefix. Both sides compute,
per segment, the table fingerprint of `shared.hashing` (count, XOR of 60 bits, sum of 32 bits of the
row hashes); equal segments are skipped, differing ones are split 16 ways and compared again, and
small differing segments are fetched row by row. Hash prefixes order the same everywhere (hex
digits), so no collation question arises between SQL Server, Python and BigQuery, and segments are
balanced because hashes are uniform.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.cloud import bigquery

from shared.hashing import TableFingerprint, fingerprint_sql

MAX_DEPTH = 4          # 16**4 = 65,536 leaf segments at most held in memory per side
LEAF_ROWS = 256        # a differing segment this small is fetched instead of split
_HEX = "0123456789abcdef"

Segments = dict[str, TableFingerprint]
SideLevel = Callable[[int, list[str] | None], Segments]


def segment_sql(table_sql: str, *, key_hash: str, row_hash: str, depth: int,
                parents: list[str] | None) -> tuple[str, list[bigquery.ArrayQueryParameter]]:
    """Per-segment fingerprints at `depth` hex digits of `key_hash` over `table_sql` (a quoted table
    or a parenthesised subquery), restricted to children of `parents` when given.

    `key_hash`/`row_hash` are backtick-quoted column names."""
    if not 1 <= depth <= 32:
        raise ValueError(f"segment depth must be 1..32, got {depth}")
    where, params = "", []
    if parents is not None:
        where = f" WHERE SUBSTR({key_hash}, 1, {depth - 1}) IN UNNEST(@parents)"
        params = [bigquery.ArrayQueryParameter("parents", "STRING", sorted(parents))]
    sql = (f"SELECT SUBSTR({key_hash}, 1, {depth}) AS segment, {fingerprint_sql(row_hash)} "
           f"FROM {table_sql}{where} GROUP BY segment")
    return sql, params


def rows_to_segments(rows: Iterable[Any]) -> Segments:
    return {str(r["segment"]): TableFingerprint(int(r["row_count"]), int(r["xor60"]), int(r["sum32"]))
            for r in rows}


@dataclass
class SegmentIndex:
    """One side's segment fingerprints, built row by row (the source side of `compare-keys`)."""

    depth: int = MAX_DEPTH
    leaves: Segments = field(default_factory=dict)
    rows: int = 0

    def add(self, key_hash: str, row_hash: str) -> None:
        prefix = key_hash[: self.depth]
        segment = self.leaves.get(prefix)
        if segment is None:
            segment = self.leaves[prefix] = TableFingerprint()
        segment.add(row_hash)
        self.rows += 1

    def level(self, depth: int, parents: list[str] | None = None) -> Segments:
        """Fingerprints at `depth` digits, merged from the leaves, optionally under `parents`."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must be 1..{self.depth}, got {depth}")
        wanted = None if parents is None else set(parents)
        out: Segments = {}
        for prefix, fingerprint in self.leaves.items():
            if wanted is not None and prefix[: depth - 1] not in wanted:
                continue
            merged = out.get(prefix[:depth])
            if merged is None:
                merged = out[prefix[:depth]] = TableFingerprint()
            merged.merge(fingerprint)
        return out


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
          on_level: Callable[[int, int], None] | None = None) -> Drill:
    """Compares two sides level by level, descending only into differing segments.

    A differing segment becomes a leaf (to be fetched row by row) when neither side holds more than
    `leaf_rows` rows in it or `max_depth` is reached."""
    parents: list[str] | None = None
    leaves: list[str] = []
    compared = 0
    depth = 1
    while True:
        a, b = left(depth, parents), right(depth, parents)
        compared += len(a.keys() | b.keys())
        found = differing(a, b)
        if on_level:
            on_level(depth, len(found))
        empty = TableFingerprint()
        split = [p for p in found
                 if depth < max_depth and max(a.get(p, empty).count, b.get(p, empty).count) > leaf_rows]
        leaves += [p for p in found if p not in set(split)]
        if not split:
            return Drill(sorted(leaves), depth, compared)
        parents, depth = split, depth + 1


def prefix_condition(column: str, prefixes: list[str]) -> tuple[str, list[bigquery.ArrayQueryParameter]]:
    """A WHERE condition selecting rows whose `column` starts with one of `prefixes` (any lengths)."""
    by_length: dict[int, list[str]] = {}
    for prefix in prefixes:
        if not prefix or any(ch not in _HEX for ch in prefix):
            raise ValueError(f"not a hex prefix: {prefix!r}")
        by_length.setdefault(len(prefix), []).append(prefix)
    if not by_length:
        return "FALSE", []
    conditions, params = [], []
    for i, (length, values) in enumerate(sorted(by_length.items())):
        conditions.append(f"SUBSTR({column}, 1, {length}) IN UNNEST(@prefixes_{i})")
        params.append(bigquery.ArrayQueryParameter(f"prefixes_{i}", "STRING", sorted(values)))
    return "(" + " OR ".join(conditions) + ")", params
