"""Chunks are cut by bytes as well as rows: each fetch asks for what the budget left holds at the
width of the rows fetched last, so a chunk passes its budget by about one row; where long values may
come and a fetch is no round trip, by the few rows of one fetch at most, however narrow the rows
before them."""
from __future__ import annotations

import pytest

from shared.extractor.arrow_stream import _MIN_BATCH_ROWS, _NotArrow, _sqlite_batch_rows
from shared.extractor.chunk_size import (
    FETCH_ROWS,
    STREAMED_FETCH_ROWS,
    fetch_rows,
    gathered,
    long_value_positions,
    row_bytes,
)
from shared.schema import Column, TableSchema


def _fetcher(rows: list[tuple]) -> tuple[list[int], object]:
    asked: list[int] = []
    remaining = list(rows)

    def fetch(n: int) -> list[tuple]:
        asked.append(n)
        taken, remaining[:] = remaining[:n], remaining[n:]
        return taken
    return asked, fetch


def _size(rows: list[tuple]) -> int:
    return sum(len(row[1]) for row in rows)


def test_without_a_byte_budget_chunks_are_chunk_rows_long() -> None:
    rows = [(i, "x") for i in range(10)]
    asked, fetch = _fetcher(rows)
    assert [len(c) for c in gathered(fetch, 4, None, _size)] == [4, 4, 2]
    assert asked == [4, 4, 4, 4]


def test_wide_rows_are_cut_by_bytes_and_every_row_is_kept_in_order() -> None:
    rows = [(i, "n" * 10) for i in range(50)] + [(i, "w" * 1000) for i in range(50, 600)] + [(600, "n")]
    asked, fetch = _fetcher(rows)
    chunks = list(gathered(fetch, 1_000, 3_000, _size))
    assert [row for chunk in chunks for row in chunk] == rows
    assert all(_size(chunk) >= 3_000 for chunk in chunks[:-1])  # none cut before its budget
    steady = [chunk for chunk in chunks if all(len(row[1]) == 1000 for row in chunk)]
    assert steady and all(_size(chunk) <= 3_000 + 1_000 for chunk in steady)  # past it by one row
    assert max(asked) <= FETCH_ROWS and asked[0] < 50  # a first fetch knows no width


def test_the_row_limit_still_holds_under_the_byte_budget() -> None:
    rows = [(i, "") for i in range(2_500)]
    _, fetch = _fetcher(rows)
    assert [len(c) for c in gathered(fetch, 1_000, 1 << 30, _size)] == [1_000, 1_000, 500]


def test_only_long_text_and_binary_columns_are_measured() -> None:
    schema = TableSchema(key=["id"], columns=[
        Column(name="id", bq_name="id", source_type="int", bq_type="INT64"),
        Column(name="code", bq_name="code", source_type="varchar(10)", bq_type="STRING", length=10),
        Column(name="body", bq_name="body", source_type="text", bq_type="STRING"),
        Column(name="blob", bq_name="blob", source_type="blob", bq_type="BYTES"),
    ])
    assert long_value_positions(schema) == [2, 3]
    size = row_bytes(4, [2, 3])
    assert size([(1, "abc", "x" * 100, b"yy"), (2, "d", None, 5)]) == 100 + 2 + 2 * 2 * 16


def _schema(*long_types: str) -> TableSchema:
    return TableSchema(key=["id"], columns=[
        Column(name="id", bq_name="id", source_type="int", bq_type="INT64"),
        *(Column(name=f"c{i}", bq_name=f"c{i}", source_type="t", bq_type=t) for i, t in enumerate(long_types)),
    ])


def test_a_run_of_wide_rows_after_narrow_ones_passes_the_budget_by_one_small_fetch_at_most() -> None:
    wide, budget = 100_000, 1_000_000
    rows = [(i, "n" * 10) for i in range(300)] + [(i, "w" * wide) for i in range(300, 360)] + [(360, "n")]
    asked, fetch = _fetcher(rows)
    chunks = list(gathered(fetch, 50_000, budget, _size, STREAMED_FETCH_ROWS))
    assert [row for chunk in chunks for row in chunk] == rows
    assert max(asked) <= STREAMED_FETCH_ROWS
    # the old 256-row fetches after the narrow rows held all 60 wide rows (6 MB) in one chunk
    assert max(_size(chunk) for chunk in chunks) <= budget + STREAMED_FETCH_ROWS * wide


def test_a_fetch_asks_few_rows_only_where_long_values_come_without_a_round_trip() -> None:
    documents, narrow = _schema("STRING", "BYTES"), _schema()
    assert fetch_rows(documents, round_trip=False) == STREAMED_FETCH_ROWS  # sqlite3, pymysql SSCursor, pymssql
    assert fetch_rows(documents, round_trip=True) == FETCH_ROWS            # psycopg2's named cursor
    assert fetch_rows(narrow, round_trip=False) == FETCH_ROWS
    # SQLite measures its widest row: narrow rows are fetched many at a time, documents still few
    assert fetch_rows(documents, False, 8 << 20, widest_row=154) == FETCH_ROWS
    assert fetch_rows(documents, False, 8 << 20, widest_row=9_000_000) == STREAMED_FETCH_ROWS
    assert fetch_rows(documents, False, 8 << 20, widest_row=100_000) == (8 << 20) // 8 // 100_000


def test_sqlite_arrow_batches_hold_the_budget_at_the_widest_row_or_go_to_the_dbapi_reader() -> None:
    assert _sqlite_batch_rows(100, 50_000, 8 << 20) == 50_000
    assert _sqlite_batch_rows(100_000, 50_000, 8 << 20) == (8 << 20) // 100_000
    assert _sqlite_batch_rows(10, 5, 1 << 20) == 5  # few chunk rows are no reason to leave Arrow
    with pytest.raises(_NotArrow):
        _sqlite_batch_rows((8 << 20) // (_MIN_BATCH_ROWS - 1), 50_000, 8 << 20)
