"""The screen of a delta (`shared.extractor.unchanged`) against the plain merge join: the same shipped
rows, deleted keys and index whatever it keeps, and bounded memory when it cannot screen a chunk."""
from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.extractor.arrow_stream import ArrowChunk
from shared.extractor.column_key_diff import ColumnKeyDiff
from shared.extractor.dbapi_stream import SourceChunk
from shared.extractor.delta import SharedRead, screened_join
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.unchanged import Screen, chunk_changes
from shared.key_index import index_schema
from shared.schema import Column, TableSchema

SCHEMA = TableSchema(columns=[Column(name="id", bq_name="id", source_type="bigint", bq_type="INT64", nullable=False),
                              Column(name="v", bq_name="v", source_type="text", bq_type="STRING")], key=["id"])
TABLES = st.dictionaries(st.integers(0, 80), st.one_of(st.none(), st.sampled_from(["x", "y", "zz"])), max_size=60)


def _arrow_chunks(table: dict[int, str | None], size: int) -> Iterator[ArrowChunk]:
    rows = sorted(table.items())
    for start in range(0, len(rows), size):
        part = rows[start:start + size]
        columns = [pa.array([k for k, _ in part], pa.int64()), pa.array([v for _, v in part], pa.string())]
        yield ArrowChunk(columns, (None, None), (part[-1][0],), lambda part=part: SourceChunk(part, (None, None)))


def _full_index(table: dict[int, str | None]) -> pa.Table:
    screen, preparer = Screen(SCHEMA), ChunkPreparer(SCHEMA)
    parts = []
    for chunk in _arrow_chunks(table, 7):
        rest, screened = screen(chunk)
        parts.append(screen.indexed(preparer(rest)[0], screened).table)
    return pa.concat_tables(parts) if parts else index_schema(SCHEMA).empty_table()


def _batches(index: pa.Table, size: int) -> Iterator[pa.RecordBatch]:
    yield from index.to_batches(max_chunksize=size)


@settings(max_examples=60, deadline=None)
@given(TABLES, TABLES, st.integers(1, 9), st.integers(1, 9))
def test_screened_delta_ships_and_indexes_what_the_plain_join_does(before: dict, after: dict, chunk: int,
                                                                   batch: int) -> None:
    base = _full_index(before)
    preparer = ChunkPreparer(SCHEMA)
    diff, screen = screened_join(_batches(base, batch), SCHEMA)
    plain = ColumnKeyDiff(_batches(base, batch), "id")
    shipped, deleted, expected_shipped, expected_deleted, indexes, prepared_rows = [], [], [], [], [], 0
    for chunk_rows in _arrow_chunks(after, chunk):
        whole = preparer(chunk_rows)[0]
        expected = plain.feed_prepared(whole)
        expected_shipped += [whole.keys()[i] for i in expected.changed]
        expected_deleted += [key for key, _ in expected.deleted]

        rest, screened = screen(chunk_rows)
        prepared = preparer(rest)[0]
        prepared_rows += len(prepared)
        index = screen.indexed(prepared, screened)
        indexes.append(index.table)
        changes = chunk_changes(diff, prepared, index)
        shipped += [prepared.keys()[i] for i in changes.changed]
        deleted += [key for key, _ in changes.deleted]
    deleted += [key for key, _ in diff.finish()]
    expected_deleted += [key for key, _ in plain.finish()]

    assert shipped == expected_shipped
    assert deleted == expected_deleted
    assert prepared_rows == sum(1 for k, v in after.items() if k not in before or before[k] != v)
    assert (pa.concat_tables(indexes) if indexes else index_schema(SCHEMA).empty_table()).equals(_full_index(after))


def test_chunks_it_cannot_screen_do_not_pile_base_rows_up() -> None:
    """DBAPI chunks carry no Arrow keys to screen by: the base rows the merge join reads for them
    must be let go by the screen's side of the shared read too."""
    rows, size = 200_000, 10_000
    keys = pa.array(range(rows), pa.int64())
    hashes = pa.array([f"{i:032x}" for i in range(rows)])
    base = pa.table({"id": keys, "_key_hash": hashes, "_row_hash": hashes, "_raw_hash": keys})
    del keys, hashes

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, rows, size):  # fresh buffers a batch, as a Parquet reader gives
            yield pa.RecordBatch.from_pylist(base.slice(start, size).to_pylist(), schema=base.schema)

    preparer = ChunkPreparer(SCHEMA)
    diff, screen = screened_join(batches(), SCHEMA)
    start_bytes, peak = pa.total_allocated_bytes(), 0
    for start in range(0, rows, size):
        chunk = SourceChunk([(k, "x") for k in range(start, start + size)], (None, None))
        rest, screened = screen(chunk)
        prepared = preparer(rest)[0]
        index = screen.indexed(prepared, screened)
        diff.feed_prepared(prepared)
        peak = max(peak, pa.total_allocated_bytes() - start_bytes)
        del rest, prepared, index
    assert peak < base.nbytes / 4, f"{peak} bytes held against a base index of {base.nbytes}"


class _Item:
    pass


def test_a_shared_read_lets_each_item_go_once_both_readers_had_it() -> None:
    alive: list[weakref.ref[_Item]] = []

    def items() -> Iterator[_Item]:  # as the Parquet reader makes batches: one at a time, held by none
        for _ in range(200):
            item = _Item()
            alive.append(weakref.ref(item))
            yield item

    shared = SharedRead(items())
    leading, lagging = shared.reader(0), shared.reader(1)
    ahead = [next(leading) for _ in range(120)]
    assert [next(lagging) for _ in range(100)] == ahead[:100]
    del ahead
    gc.collect()
    assert not any(ref() for ref in alive[:99]) and all(ref() for ref in alive[100:120])
    lagging.close()  # the other reads on alone and holds nothing back
    assert sum(1 for _ in leading) == 80
    gc.collect()
    assert sum(1 for ref in alive if ref()) <= 2  # at most what each generator frame still names
