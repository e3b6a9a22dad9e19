"""Rows a delta can leave as they were without preparing them again.

Every chunk of a single-column-key table read through ADBC gets a raw hash a row
(`shared.raw_hash`), which goes into the key index. When the next delta reads a row whose key the base index holds with the same raw hash, the
source values are the ones the base snapshot converted and hashed, so the row keeps its base index
entry (key hash, row hash) and is neither converted, checked, hashed nor shipped. Only the other
rows of a chunk are prepared; the chunk's index is then the prepared rows and the kept ones merged
in key order, and that is what the delta's merge join sees, so deleted keys are found as before.

Screening needs the chunk's raw key column to be the key's converted type (so raw and converted keys
compare equal), a single key column whose Arrow order is Python's, and a base index written with
the same raw hash (`Manifest.index_raw_hash`). Otherwise the chunk is prepared whole, as always.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from shared.columnar_hash import fingerprint_of_hex
from shared.extractor.arrow_stream import ArrowChunk
from shared.extractor.column_key_diff import BaseCursor, ColumnKeyDiff, check_increasing
from shared.extractor.key_order import ChunkDiff, KeyOrderError
from shared.extractor.prepare import Prepared
from shared.hashing import TableFingerprint
from shared.key_index import index_schema
from shared.raw_hash import RAW_HASH_COLUMN, raw_hashes
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.types import arrow_type


@dataclass(frozen=True)
class Screened:
    """What screening learned of one chunk, for its turn after preparation."""

    rows: int                      # rows the source gave, kept ones included
    keys: pa.Array | None          # the raw key column, when raw and converted keys compare equal
    raw_hashes: pa.Array | None    # one a row of the chunk, as read
    kept: pa.Table | None          # base index rows of the rows left unprepared; None: none left


@dataclass(frozen=True)
class ChunkIndex:
    """A chunk's key index rows in key order, and where each came from."""

    table: pa.Table                # key column(s), _key_hash, _row_hash, _raw_hash
    origin: pa.Array | None        # row of the prepared chunk, or -1 for a kept base row; None: all prepared, in order
    kept_fingerprint: TableFingerprint


def screenable(schema: TableSchema) -> bool:
    return len(schema.key_columns) == 1 and schema.key_columns[0].bq_name != RAW_HASH_COLUMN


class Screen:
    """Screens a table's chunks against its base index (or, without a base, only hashes them raw)."""

    def __init__(self, schema: TableSchema, base: Iterator[pa.RecordBatch] | None = None) -> None:
        self._schema = index_schema(schema)
        single = screenable(schema)
        self._key_position = schema.key_positions[0] if single else None
        self._key_name = schema.key_columns[0].bq_name if single else None
        self._key_type = arrow_type(schema.key_columns[0].bq_type) if single else None
        self._key_positions = schema.key_positions
        self._base = BaseCursor(base, self._key_name) if base is not None and single else None
        self._last: pa.Scalar | None = None

    def __call__(self, chunk: Sequence[tuple]) -> tuple[Sequence[tuple], Screened]:
        """The chunk to prepare (the rows not kept) and what to finish it with."""
        if not isinstance(chunk, ArrowChunk) or not len(chunk) or self._key_position is None:
            return chunk, Screened(len(chunk), None, None, None)  # nothing a later delta could screen with
        hashes = raw_hashes(chunk.columns) if chunk.exact else None
        key_column = chunk.columns[self._key_position]
        keys = key_column if key_column.type == self._key_type else None
        if self._base is None or hashes is None or keys is None:
            return chunk, Screened(len(chunk), keys, hashes, None)
        self._last = check_increasing(keys, self._last, "source")
        base = self._base.through(keys[-1])
        if base is None or not base.num_rows:
            return chunk, Screened(len(chunk), keys, hashes, None)
        found = pc.index_in(keys, value_set=base.column(self._key_name).combine_chunks())
        before = base.column(RAW_HASH_COLUMN).combine_chunks().take(found)
        same = pc.fill_null(pc.equal(hashes, before), False)
        if not pc.any(same).as_py():
            return chunk, Screened(len(chunk), keys, hashes, None)
        kept = base.take(found.filter(same)).select(self._schema.names).cast(self._schema)
        return chunk.only(pc.invert(same)), Screened(len(chunk), keys, hashes, kept)

    @property
    def screening(self) -> bool:
        """Against a base index with raw hashes: a row prepared again has a raw hash the base lacks."""
        return self._base is not None

    def close(self) -> None:
        """After the last chunk: the merge join reads the rest of the base index on its own."""
        if self._base is not None:
            self._base.close()

    def indexed(self, prepared: Prepared, screened: Screened) -> ChunkIndex:
        """The chunk's index: its prepared rows with their raw hashes, plus the kept rows."""
        table = prepared.table
        if self._base is not None and len(prepared):
            # what screening could not read through (a chunk of the DBAPI reader) is passed here, so
            # the base rows shared with the merge join (`SharedRead`) never pile up behind it
            self._base.through(table.column(self._key_positions[0])[-1])
        raw = pa.nulls(len(prepared), pa.int64())
        if screened.keys is not None and screened.raw_hashes is not None and len(prepared):
            key = table.column(self._key_positions[0]).combine_chunks()
            whole = key.equals(screened.keys)  # the usual case: every row read was prepared, as read
            raw = screened.raw_hashes if whole else screened.raw_hashes.take(pc.index_in(key, value_set=screened.keys))
        columns = [table.column(p) for p in self._key_positions]
        own = pa.Table.from_arrays([*columns, table.column(KEY_HASH_COLUMN), table.column(ROW_HASH_COLUMN), raw],
                                   schema=self._schema)
        kept = screened.kept
        if kept is None:
            return ChunkIndex(own, None, TableFingerprint())
        if len(prepared):  # the reference reader gives a whole key range: a prepared row wins over its kept twin
            kept = kept.filter(pc.invert(pc.is_in(kept.column(self._key_name), value_set=own.column(self._key_name))))
        origin = pa.chunked_array([pa.array(range(len(prepared)), pa.int64()), pa.nulls(kept.num_rows, pa.int64())])
        merged = pa.concat_tables([own, kept]).append_column("origin", origin)
        merged = merged.take(pc.sort_indices(merged.column(self._key_name)))
        origin = pc.fill_null(merged.column("origin"), -1).combine_chunks()
        return ChunkIndex(merged.drop_columns(["origin"]), origin,
                          fingerprint_of_hex(kept.column(ROW_HASH_COLUMN).combine_chunks()))


class _Join(Protocol):
    def feed_prepared(self, prepared: Prepared) -> ChunkDiff: ...


def chunk_changes(diff: _Join, prepared: Prepared, index: ChunkIndex) -> ChunkDiff:
    """The chunk's shipped rows (positions in `prepared`) and deleted keys. A chunk with kept rows is
    joined as its whole index, kept rows included, so that their keys do not count as deleted."""
    if index.origin is None:
        return diff.feed_prepared(prepared)
    assert isinstance(diff, ColumnKeyDiff)  # only a single-column key is screened
    table = index.table
    changes = diff.feed(table.column(0).combine_chunks(), table.column(ROW_HASH_COLUMN).combine_chunks())
    shipped = index.origin.take(pa.array(changes.changed, pa.int64()))
    if pc.any(pc.less(shipped, 0)).as_py():
        raise KeyOrderError("a row kept from the base differs from the base index")
    return ChunkDiff(shipped.to_pylist(), changes.deleted)
