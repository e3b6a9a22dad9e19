"""Delta snapshots: which rows changed since the last applied snapshot, in bounded memory.

Rows stream in key order and the previous snapshot's index (key columns plus hashes, written in
the same order) streams beside them: a merge join keeps one chunk of each in memory, whatever the
table's size. The join needs both sides ordered the same way; the source is asked for binary
collation on text keys, and every key is checked to be strictly increasing in Python's order. If
that ever fails (a collation we did not foresee) the run falls back to a full snapshot rather than
guess. A keyless table has no key to join on: its snapshots are always full.
"""
from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import pyarrow as pa
from google.cloud import bigquery

from shared import bigquery as bq
from shared import key_index, ledger, logs, results
from shared.applied import manifest_at
from shared.extractor.column_key_diff import ColumnKeyDiff, ordered_like_python
from shared.extractor.key_order import ChunkDiff, KeyOrder, KeyOrderError
from shared.extractor.unchanged import Screen, screenable
from shared.identifiers import quote_bigquery
from shared.key_index import KeyIndex
from shared.manifest import Manifest, ManifestError, Part
from shared.raw_hash import RAW_HASH_COLUMN
from shared.raw_hash import tag as raw_hash_tag
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.topology import RECONCILIATION_TABLE
from shared.types import arrow_type

if TYPE_CHECKING:
    from shared.extractor.prepare import Prepared

log = logs.get(__name__)
INDEX_BATCH_ROWS = 50_000
T = TypeVar("T")


@dataclass(frozen=True)
class Base:
    """The applied snapshot a delta is computed against, and its whole key index."""

    manifest: Manifest
    index: KeyIndex

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def chain_length(self) -> int:
        return self.manifest.delta.chain_length if self.manifest.delta else 0


def find_base(project: str, dataset: str, table_id: str, schema: TableSchema) -> Base | None:
    """The latest applied snapshot of the table, if a delta on top of it can be trusted: the table
    is there and has not been changed since by anything but that load (a refusal, an operator's
    delete or truncate), the reconciler found it equal to that snapshot, and the schema is the same."""
    if schema.keyless:
        log.info("%s is keyless: full snapshot (a delta needs unique, ordered keys to merge-join on)", table_id)
        return None
    try:
        latest = ledger.latest_event(project, dataset, table_id)
        if latest is None or latest["status"] != ledger.APPLIED or not latest.get("manifest_uri"):
            return None
        if not _reconciled_clean(project, dataset, table_id, str(latest["run_id"])):
            log.info("last snapshot of %s did not reconcile: full snapshot", table_id)
            return None
        if bq.get_table(table_id) is None:  # dropped by hand: a delta could only be refused
            log.warning("%s is gone from BigQuery: full snapshot, to re-create and reload it", table_id)
            return None
    except Exception as error:  # no ledger yet, or BigQuery unreachable: a full snapshot is always safe
        log.info("no base for a delta of %s (%s): full snapshot", table_id, type(error).__name__)
        return None
    manifest_uri = str(latest["manifest_uri"])
    try:
        manifest = manifest_at(manifest_uri)
    except ManifestError as error:
        log.warning("the manifest of %s's last snapshot cannot be read (%s: %s): full snapshot",
                    table_id, manifest_uri, error)
        return None
    if manifest is None:
        log.warning("last snapshot of %s is gone from the bucket (%s, past the bucket's retention?): full snapshot",
                    table_id, manifest_uri)
        return None
    if manifest.table_schema != schema:
        return None
    try:
        index = key_index.of_snapshot(manifest, manifest_uri)
        if not key_index.ships_patch(manifest):
            key_index.require_intact(manifest.run_id, "key index", index.parts)
    except key_index.IndexDamaged as error:
        log.warning("no base for a delta of %s (%s): full snapshot", table_id, error)
        return None
    except key_index.IndexUnavailable as error:
        log.info("no base for a delta of %s (%s): full snapshot", table_id, error)
        return None
    return Base(manifest, index) if index.parts else None


def _reconciled_clean(project: str, dataset: str, table_id: str, run_id: str) -> bool:
    """False only when a reconciliation of that run found differences (none yet counts as clean:
    the reconciler may simply not have run, and a bad delta is caught by the loader's row count)."""
    table = f"{project}.{dataset}.{RECONCILIATION_TABLE}"
    if bq.get_table(table) is None:
        return True
    rows = bq.query(project, f"SELECT COUNTIF(verdict = @mismatch) AS bad FROM {quote_bigquery(*table.split('.'))} "
                             "WHERE table_id = @table_id AND run_id = @run_id",
                    [bigquery.ScalarQueryParameter("mismatch", "STRING", results.MISMATCH),
                     bigquery.ScalarQueryParameter("table_id", "STRING", table_id),
                     bigquery.ScalarQueryParameter("run_id", "STRING", run_id)])
    return not rows[0]["bad"]


def previous_batches(parts: Sequence[Part], key_names: Sequence[str], *,
                     raw_hash: bool = False) -> Iterator[pa.RecordBatch]:
    """The base snapshot's index in key order: key columns, key hash and row hash (and the raw hash,
    if asked), a batch at a time."""
    columns = [*key_names, KEY_HASH_COLUMN, ROW_HASH_COLUMN] + ([RAW_HASH_COLUMN] if raw_hash else [])
    return key_index.read_batches(parts, columns, INDEX_BATCH_ROWS)


def previous_index(parts: Sequence[Part], key_names: Sequence[str]) -> Iterator[tuple[tuple, str, str]]:
    """(key values, key hash, row hash) of the base snapshot in key order, a batch at a time."""
    for batch in previous_batches(parts, key_names):
        columns = [batch.column(n).to_pylist() for n in key_names]
        key_hashes = batch.column(KEY_HASH_COLUMN).to_pylist()
        row_hashes = batch.column(ROW_HASH_COLUMN).to_pylist()
        yield from zip(zip(*columns, strict=True), key_hashes, row_hashes, strict=True)


def key_diff(index: KeyIndex, schema: TableSchema) -> tuple[KeyDiff | ColumnKeyDiff, Screen]:
    """The merge join for this table (a chunk at a time in Arrow for a single key column whose Arrow
    order is Python's, row by row otherwise) and the screen of its chunks: against the same base
    index, read once, when that index carries raw hashes this extractor can compare with."""
    parts, names = index.parts, [c.bq_name for c in schema.key_columns]
    if len(names) == 1 and ordered_like_python(arrow_type(schema.key_columns[0].bq_type)):
        if index.raw_hash == raw_hash_tag() and screenable(schema):
            return screened_join(previous_batches(parts, names, raw_hash=True), schema)
        return ColumnKeyDiff(previous_batches(parts, names), names[0]), Screen(schema)
    return KeyDiff(previous_index(parts, names)), Screen(schema)


def screened_join(base: Iterator[pa.RecordBatch], schema: TableSchema) -> tuple[ColumnKeyDiff, Screen]:
    """The merge join and the screen of a single-column key over one read of the base index."""
    shared = SharedRead(base)
    return ColumnKeyDiff(shared.reader(0), schema.key_columns[0].bq_name), Screen(schema, shared.reader(1))


class SharedRead(Generic[T]):
    """One pass over `items` for two readers; an item is let go as soon as both have had it (unlike
    itertools.tee, which frees its buffer 57 items at a time: 57 index batches held needlessly)."""

    def __init__(self, items: Iterator[T]) -> None:
        self._items = items
        self._buffer: deque[T] = deque()
        self._first = 0                  # position of _buffer[0] in the stream
        self._positions = [0, 0]         # next position of each reader

    def reader(self, which: int) -> Iterator[T]:
        """The items for reader `which` (0 or 1); closing it lets the other read on alone."""
        try:
            while True:
                position = self._positions[which]
                if position - self._first < len(self._buffer):
                    item = self._buffer[position - self._first]
                else:
                    try:
                        item = next(self._items)
                    except StopIteration:
                        return
                    self._buffer.append(item)
                self._positions[which] = position + 1
                self._release()
                yield item
        finally:
            self._positions[which] = sys.maxsize
            self._release()

    def _release(self) -> None:
        while self._buffer and min(self._positions) > self._first:
            self._buffer.popleft()
            self._first += 1


class KeyDiff:
    """Merge join of the current rows (fed chunk by chunk) with the base index."""

    def __init__(self, previous: Iterator[tuple[tuple, str, str]]) -> None:
        self._previous = previous
        self._pending = next(previous, None)
        self._previous_order = KeyOrder("base index")
        self._current_order = KeyOrder("source")
        if self._pending is not None:
            self._previous_order.check(self._pending[0])

    def _advance(self) -> None:
        self._pending = next(self._previous, None)
        if self._pending is not None:
            self._previous_order.check(self._pending[0])

    def feed_prepared(self, prepared: Prepared) -> ChunkDiff:
        return self.feed(prepared.keys(), prepared.row_hashes())

    def feed(self, keys: Sequence[tuple], row_hashes: Sequence[str]) -> ChunkDiff:
        try:
            return self._feed(keys, row_hashes)
        except TypeError as error:  # keys of the two sides that Python cannot even compare
            raise KeyOrderError(f"keys cannot be ordered: {error}") from None

    def _feed(self, keys: Sequence[tuple], row_hashes: Sequence[str]) -> ChunkDiff:
        diff = ChunkDiff([], [])
        for position, (key, row_hash) in enumerate(zip(keys, row_hashes, strict=True)):
            self._current_order.check(key)
            while self._pending is not None and self._pending[0] < key:
                diff.deleted.append((self._pending[0], self._pending[1]))
                self._advance()
            if self._pending is not None and self._pending[0] == key:
                if self._pending[2] != row_hash:
                    diff.changed.append(position)
                self._advance()
            else:
                diff.changed.append(position)
        return diff

    def finish(self) -> list[tuple[tuple, str]]:
        """Keys of the base after the last current key: all deleted."""
        deleted = []
        while self._pending is not None:
            deleted.append((self._pending[0], self._pending[1]))
            self._advance()
        return deleted
