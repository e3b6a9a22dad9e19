"""Chunks are cut by bytes as well as rows: each fetch asks for what the budget left holds at the
width of the rows fetched last, so a chunk passes its budget by about one row."""
from __future__ import annotations

from shared.extractor.chunk_size import FETCH_ROWS, gathered, long_value_positions, row_bytes
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
