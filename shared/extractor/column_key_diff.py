"""The delta's merge join a chunk at a time with Arrow kernels, for a table keyed by one column whose
Arrow order is Python's (`shared.extractor.delta.KeyDiff` does the same row by row, for every key).

Both sides arrive in key order: the current chunk, and the base index read a batch at a time. The
base rows up to the chunk's last key are matched against it by value (`index_in`, `is_in`): a chunk
key absent from the base, or present with another row hash, is shipped; a base key absent from the
chunk is deleted. Both orders are checked strictly increasing, as `KeyDiff` checks them.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from shared.extractor.key_order import ChunkDiff, KeyOrderError
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN

if TYPE_CHECKING:
    from shared.extractor.prepare import Prepared


def ordered_like_python(kind: pa.DataType) -> bool:
    """Arrow compares these as Python compares their values (strings: UTF-8 bytes sort as code
    points). Floats are left out: NaN orders differently."""
    return (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_date32(kind) or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind))


class BaseCursor:
    """The base index, read a batch at a time in key order and handed out up to a given key."""

    def __init__(self, batches: Iterator[pa.RecordBatch], key_name: str) -> None:
        self._batches = batches
        self._key = key_name
        self._pending: pa.Table | None = None      # base rows read but not yet handed out, in key order
        self._exhausted = False
        self._last: pa.Scalar | None = None

    def through(self, last: pa.Scalar) -> pa.Table | None:
        """The base rows with keys up to `last` not handed out before."""
        while not self._exhausted and (self._last is None or not pc.greater(self._last, last).as_py()):
            self._read_one()
        if self._pending is None:
            return None
        count = int(pc.sum(pc.less_equal(self._pending.column(self._key), last)).as_py() or 0)
        taken, rest = self._pending.slice(0, count), self._pending.slice(count)
        self._pending = rest if rest.num_rows else None
        return taken

    def rest(self) -> Iterator[pa.Table]:
        """Every base row not handed out yet."""
        while self._pending is not None or not self._exhausted:
            if self._pending is None:
                self._read_one()
                continue
            pending, self._pending = self._pending, None
            yield pending

    def close(self) -> None:
        """Done with the base: its reader is closed, and what was read but not handed out let go."""
        self._pending, self._exhausted = None, True
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()

    def _read_one(self) -> None:
        batch = next(self._batches, None)
        if batch is None:
            self._exhausted = True
            return
        if not batch.num_rows:
            return
        self._last = check_increasing(batch.column(self._key), self._last, "base index")
        table = pa.Table.from_batches([batch])
        self._pending = table if self._pending is None else pa.concat_tables([self._pending, table])


class ColumnKeyDiff:
    """Merge join of the current chunks (fed one at a time) with the base index batches."""

    def __init__(self, previous: Iterator[pa.RecordBatch], key_name: str) -> None:
        self._base = BaseCursor(previous, key_name)
        self._key = key_name
        self._last_current: pa.Scalar | None = None

    def feed_prepared(self, prepared: Prepared) -> ChunkDiff:
        table = prepared.table
        return self.feed(table.column(prepared.key_positions[0]).combine_chunks(),
                         table.column(ROW_HASH_COLUMN).combine_chunks())

    def feed(self, keys: pa.Array, row_hashes: pa.Array) -> ChunkDiff:
        if not len(keys):
            return ChunkDiff([], [])
        try:
            self._last_current = check_increasing(keys, self._last_current, "source")
            return self._match(keys, row_hashes, self._base.through(keys[-1]))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            raise KeyOrderError(f"keys cannot be compared: {error}") from None

    def finish(self) -> list[tuple[tuple, str]]:
        """Keys of the base after the last current key: all deleted."""
        return [entry for table in self._base.rest() for entry in _keys_and_hashes(table, self._key)]

    def _match(self, keys: pa.Array, row_hashes: pa.Array, base: pa.Table | None) -> ChunkDiff:
        if base is None or not base.num_rows:
            return ChunkDiff(list(range(len(keys))), [])
        base_keys = base.column(self._key).combine_chunks()
        found = pc.index_in(keys, value_set=base_keys)
        before = base.column(ROW_HASH_COLUMN).combine_chunks().take(found)
        shipped = pc.or_(pc.is_null(found), pc.not_equal(before, row_hashes))
        changed = pc.indices_nonzero(pc.fill_null(shipped, True)).to_pylist()
        gone = base.filter(pc.invert(pc.is_in(base_keys, value_set=keys)))
        return ChunkDiff(changed, _keys_and_hashes(gone, self._key))


def check_increasing(keys: pa.Array, last: pa.Scalar | None, side: str) -> pa.Scalar:
    """The last key, after checking every key is greater than the one before it (and than `last`)."""
    if keys.null_count:
        raise KeyOrderError(f"{side} keys hold NULL")
    if len(keys) > 1 and not pc.all(pc.greater(keys.slice(1), keys.slice(0, len(keys) - 1))).as_py():
        raise KeyOrderError(f"{side} keys out of order within a chunk")
    if last is not None and not pc.greater(keys[0], last).as_py():
        raise KeyOrderError(f"{side} keys out of order: {last.as_py()!r} then {keys[0].as_py()!r}")
    return keys[-1]


def _keys_and_hashes(table: pa.Table, key: str) -> list[tuple[tuple, str]]:
    return [((value,), key_hash) for value, key_hash in
            zip(table.column(key).to_pylist(), table.column(KEY_HASH_COLUMN).to_pylist(), strict=True)]
