"""A delta's index patch applied to its base's key index, streamed in key order.

The base index, the patch (index rows of the delta's new and changed rows) and the deleted keys
all arrive in key order. Each base batch takes the patch rows and deleted keys up to its own last
key: its rows whose key hash is deleted or patched go, the patch rows join, and the batch is put
back in key order. One base batch and about as much of the other two are held at a time.

Both the patch and the deleted keys must be strictly increasing, and every deleted key must be in
the base: otherwise the chain of snapshots is not what the delta says it is, and `IndexMergeError`
stops the merge rather than write an index the next delta would trust.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from shared.extractor.column_key_diff import ordered_like_python
from shared.extractor.key_order import KeyOrder, KeyOrderError
from shared.schema import KEY_HASH_COLUMN


class IndexMergeError(RuntimeError):
    """The patch does not fit the base index."""


def python_keys(table: pa.Table, key_names: Sequence[str]) -> list[tuple]:
    return list(zip(*(table.column(name).to_pylist() for name in key_names), strict=True))


class _Cursor:
    """A key-ordered stream of batches, handed out up to a given key."""

    def __init__(self, batches: Iterable[pa.RecordBatch], key_names: Sequence[str], what: str) -> None:
        self._batches = iter(batches)
        self._names = key_names
        self._what = what
        self._order = KeyOrder(what)
        self._pending: list[pa.Table] = []
        self._keys: list[tuple] = []
        self._exhausted = False

    def through(self, last: tuple) -> pa.Table | None:
        """The rows with keys up to `last` not handed out before."""
        while not self._exhausted and (not self._keys or self._keys[-1] <= last):
            self._read_one()
        count = bisect.bisect_right(self._keys, last)
        if not count:
            return None
        pending = pa.concat_tables(self._pending)
        self._pending = [pending.slice(count)] if count < pending.num_rows else []
        del self._keys[:count]
        return pending.slice(0, count)

    def rest(self) -> pa.Table | None:
        while not self._exhausted:
            self._read_one()
        rows = pa.concat_tables(self._pending) if self._pending else None
        self._pending, self._keys = [], []
        return rows

    def _read_one(self) -> None:
        batch = next(self._batches, None)
        if batch is None:
            self._exhausted = True
            return
        if not batch.num_rows:
            return
        table = pa.Table.from_batches([batch])
        keys = python_keys(table, self._names)
        try:
            for key in keys:
                self._order.check(key)
        except KeyOrderError as error:
            raise IndexMergeError(str(error)) from None
        self._pending.append(table)
        self._keys += keys


def apply_patch(base: Iterable[pa.RecordBatch], patch: Iterable[pa.RecordBatch], deleted: Iterable[pa.RecordBatch],
                key_names: Sequence[str], schema: pa.Schema) -> Iterator[pa.Table]:
    """The index after the delta, in key order, about a base batch at a time. `base` and `patch`
    carry the columns of `schema`; `deleted` the key columns and the key hash."""
    patches = _Cursor(patch, key_names, "index patch")
    deletions = _Cursor(deleted, key_names, "deleted keys")
    arrow_order = all(ordered_like_python(schema.field(name).type) for name in key_names)
    for batch in base:
        if not batch.num_rows:
            continue
        table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
        last = python_keys(table.slice(table.num_rows - 1), key_names)[0]
        yield _merged(table, patches.through(last), deletions.through(last), key_names, arrow_order)
    gone = deletions.rest()
    if gone is not None:
        raise IndexMergeError(f"{gone.num_rows} deleted key(s) beyond the base index's last key, "
                              f"first {python_keys(gone.slice(0, 1), key_names)[0]!r}")
    rest = patches.rest()
    if rest is not None:
        yield rest.select(schema.names).cast(schema)


def _merged(table: pa.Table, new: pa.Table | None, gone: pa.Table | None, key_names: Sequence[str],
            arrow_order: bool) -> pa.Table:
    hashes = table.column(KEY_HASH_COLUMN)
    if gone is not None:
        present = pc.is_in(gone.column(KEY_HASH_COLUMN), value_set=hashes.combine_chunks())
        if not pc.all(present).as_py():
            missing = gone.filter(pc.invert(present)).slice(0, 1)
            raise IndexMergeError(f"deleted key {python_keys(missing, key_names)[0]!r} is not in the base index")
    dropped = [t.column(KEY_HASH_COLUMN) for t in (new, gone) if t is not None]
    if dropped:
        value_set = pa.chunked_array([c for column in dropped for c in column.chunks], pa.string()).combine_chunks()
        table = table.filter(pc.invert(pc.is_in(hashes, value_set=value_set)))
    if new is None:
        return table
    combined = pa.concat_tables([table, new.select(table.column_names).cast(table.schema)])
    if arrow_order:
        order = pc.sort_indices(combined, sort_keys=[(name, "ascending") for name in key_names])
    else:
        keys = python_keys(combined, key_names)
        order = pa.array(sorted(range(len(keys)), key=keys.__getitem__), pa.int64())
    return combined.take(order)
