"""A delta's index patch applied to its base index equals the index of the table after the delta."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.loader.index_merge import IndexMergeError, apply_patch
from shared.raw_hash import RAW_HASH_COLUMN
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN

INT_KEY = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field(KEY_HASH_COLUMN, pa.string(), nullable=False),
                     pa.field(ROW_HASH_COLUMN, pa.string(), nullable=False), pa.field(RAW_HASH_COLUMN, pa.int64())])
# a float key column: Arrow's order is not trusted to be Python's, so the merge sorts in Python
TWO_KEYS = pa.schema([pa.field("region", pa.string(), nullable=False), pa.field("score", pa.float64(), nullable=False),
                      pa.field(KEY_HASH_COLUMN, pa.string(), nullable=False),
                      pa.field(ROW_HASH_COLUMN, pa.string(), nullable=False), pa.field(RAW_HASH_COLUMN, pa.int64())])


def _key_hash(key: tuple) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()


def _rows(index: dict[tuple, str], names: list[str]) -> list[dict[str, object]]:
    return [{**dict(zip(names, key, strict=True)), KEY_HASH_COLUMN: _key_hash(key), ROW_HASH_COLUMN: row_hash,
             RAW_HASH_COLUMN: len(row_hash)} for key, row_hash in sorted(index.items())]


def _batches(rows: list[dict[str, object]], schema: pa.Schema, size: int) -> list[pa.RecordBatch]:
    table = pa.Table.from_pylist(rows, schema=schema)
    return table.to_batches(max_chunksize=size) if rows else []


def _deleted(keys: list[tuple], names: list[str], schema: pa.Schema, size: int) -> list[pa.RecordBatch]:
    rows = [{**dict(zip(names, key, strict=True)), KEY_HASH_COLUMN: _key_hash(key)} for key in sorted(keys)]
    fields = [schema.field(n) for n in names] + [schema.field(KEY_HASH_COLUMN)]
    return _batches(rows, pa.schema(fields), size)


def _merge(before: dict[tuple, str], after: dict[tuple, str], names: list[str], schema: pa.Schema,
           sizes: tuple[int, int, int]) -> pa.Table:
    patch = {k: v for k, v in after.items() if before.get(k) != v}
    deleted = [k for k in before if k not in after]
    merged = apply_patch(_batches(_rows(before, names), schema, sizes[0]),
                         _batches(_rows(patch, names), schema, sizes[1]),
                         _deleted(deleted, names, schema, sizes[2]), names, schema)
    tables = list(merged)
    return pa.concat_tables(tables) if tables else schema.empty_table()


sizes = st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7))


@settings(max_examples=150, deadline=None)
@given(before=st.dictionaries(st.tuples(st.integers(-50, 50)), st.sampled_from("abc"), max_size=60),
       after=st.dictionaries(st.tuples(st.integers(-50, 50)), st.sampled_from("abc"), max_size=60), sizes=sizes)
def test_int_key_patch_gives_the_index_after(before: dict, after: dict, sizes: tuple[int, int, int]) -> None:
    merged = _merge(before, after, ["id"], INT_KEY, sizes)
    assert merged.equals(pa.Table.from_pylist(_rows(after, ["id"]), schema=INT_KEY))


@settings(max_examples=100, deadline=None)
@given(before=st.dictionaries(st.tuples(st.sampled_from(["", "a", "ä", "b", "Z"]), st.floats(-3, 3, width=16)),
                              st.sampled_from("abc"), max_size=40),
       after=st.dictionaries(st.tuples(st.sampled_from(["", "a", "ä", "b", "Z"]), st.floats(-3, 3, width=16)),
                             st.sampled_from("abc"), max_size=40), sizes=sizes)
def test_two_column_key_patch_gives_the_index_after(before: dict, after: dict, sizes: tuple[int, int, int]) -> None:
    before = {(r, s + 0.0): v for (r, s), v in before.items()}  # -0.0 and 0.0 are one key
    after = {(r, s + 0.0): v for (r, s), v in after.items()}
    merged = _merge(before, after, ["region", "score"], TWO_KEYS, sizes)
    assert merged.equals(pa.Table.from_pylist(_rows(after, ["region", "score"]), schema=TWO_KEYS))


def test_a_deleted_key_the_base_does_not_hold_stops_the_merge() -> None:
    base = _batches(_rows({(1,): "a", (3,): "b"}, ["id"]), INT_KEY, 10)
    for gone in ([(2,)], [(4,)]):
        with pytest.raises(IndexMergeError, match="deleted key"):
            list(apply_patch(base, [], _deleted(gone, ["id"], INT_KEY, 10), ["id"], INT_KEY))


def test_a_patch_out_of_order_stops_the_merge() -> None:
    rows = _rows({(1,): "a", (2,): "b"}, ["id"])
    patch = _batches(list(reversed(rows)), INT_KEY, 10)
    with pytest.raises(IndexMergeError, match="out of order"):
        list(apply_patch(_batches(_rows({(5,): "c"}, ["id"]), INT_KEY, 10), patch, [], ["id"], INT_KEY))
