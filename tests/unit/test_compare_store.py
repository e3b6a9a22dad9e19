"""`compare-keys`' differences, worked out on disk: every kind with its detail, shown in key order
(numbers as numbers), hashes written for the repair, and memory that does not grow with the number
of differing keys."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq

from matrix_sync.compare_diff import STORED_ROW_HASH, diff_leaves
from matrix_sync.compare_store import CHANGED, DUPLICATE, EXTRA, MISSING, STALE_HASH, KeyDifference
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, Column, TableSchema

SCHEMA = TableSchema(columns=[
    Column(name="id", bq_name="id", source_type="int", bq_type="INT64", nullable=False),
    Column(name="code", bq_name="code", source_type="varchar(10)", bq_type="STRING", nullable=False),
], key=["id", "code"])


def _kh(n: int) -> str:
    return f"{n:032x}"


def _target(n: int, row_hash: str, stored: str | None = None) -> dict[str, object]:
    return {"id": n, "code": f"C{n}", KEY_HASH_COLUMN: _kh(n), ROW_HASH_COLUMN: row_hash,
            STORED_ROW_HASH: row_hash if stored is None else stored}


def test_every_kind_of_difference_with_its_detail_in_display_order() -> None:
    source = [(_kh(n), f"r{n}", (str(n), f"C{n}")) for n in (1, 2, 3, 4, 10, 9)]
    target = [_target(1, "r1"),                       # equal
              _target(2, "other", stored="r2"),      # data edited behind its hash columns
              _target(3, "other"),                   # changed, hashes with it
              _target(4, "r4"), _target(4, "r4"),    # held twice
              _target(7, "r7")]                      # in BigQuery only
    found = diff_leaves(iter(source), iter(target), SCHEMA)
    found.add([KeyDifference(STALE_HASH, ("5", "C5"), _kh(5), "stored hash columns do not describe it")])
    try:
        assert [(d.kind, d.key, d.key_hash, d.detail) for d in found] == [
            (MISSING, ("9", "C9"), _kh(9), "in the source only"),
            (MISSING, ("10", "C10"), _kh(10), "in the source only"),      # 10 after 9: a number
            (EXTRA, ("7", "C7"), _kh(7), "1 row(s) in BigQuery only"),
            (CHANGED, ("2", "C2"), _kh(2), "data edited in BigQuery, hash columns untouched"),
            (CHANGED, ("3", "C3"), _kh(3), "row differs from the source"),
            (DUPLICATE, ("4", "C4"), _kh(4), "2 rows in BigQuery"),
            (STALE_HASH, ("5", "C5"), _kh(5), "stored hash columns do not describe it"),
        ]
        assert (len(found), found.count(MISSING), found.count(CHANGED), found.count(EXTRA)) == (7, 2, 2, 1)
        assert [d.key_hash for d in found.shown(2)] == [_kh(9), _kh(10)]
        assert found.known([_kh(1), _kh(3), _kh(7), _kh(8)]) == {_kh(3), _kh(7)}
    finally:
        found.close()


def test_nothing_differing_leaves_an_empty_result() -> None:
    rows = [(_kh(n), f"r{n}", (str(n), f"C{n}")) for n in range(5)]
    found = diff_leaves(iter(rows), iter([_target(n, f"r{n}") for n in range(5)]), SCHEMA)
    assert not found and len(found) == 0 and list(found) == []
    found.close()


def test_the_hashes_to_delete_go_to_a_parquet_file_once_each(tmp_path: Path) -> None:
    found = diff_leaves(iter([(_kh(1), "r1", ("1", "C1"))]),
                        iter([_target(2, "r2"), _target(1, "r1"), _target(1, "r1"), _target(3, "r3")]), SCHEMA)
    path = tmp_path / "doomed.parquet"
    assert found.write_hashes(path, EXTRA, DUPLICATE) == 3
    assert sorted(pq.read_table(path).column("key_hash").to_pylist()) == [_kh(1), _kh(2), _kh(3)]
    found.close()


def test_close_removes_the_file_and_forgets_the_differences() -> None:
    found = diff_leaves(iter([(_kh(1), "r1", ("1", "C1"))]), iter([]), SCHEMA)
    directory = found._directory
    assert directory is not None and directory.exists() and found
    found.close()
    assert not directory.exists() and not found


def test_differing_keys_by_the_hundred_thousand_are_not_held_in_memory() -> None:
    """Every key missing from BigQuery (a truncated table): before, each became a Python object."""
    rows = ((_kh(n), f"r{n}", (str(n), f"C{n}")) for n in range(300_000))
    tracemalloc.start()
    try:
        found = diff_leaves(rows, iter([]), SCHEMA)
        shown = [d.key for d in found.shown(3)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (found.count(MISSING), shown) == (300_000, [("0", "C0"), ("1", "C1"), ("2", "C2")])
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB held in Python"
    found.close()
