"""Values BigQuery cannot hold, read from a real SQLite source, are quarantined with a clear reason
by the per-row path, refused by the columnar path (which hands the chunk to the per-row path), and
leave the other rows of the chunk hashed exactly as the reference hashes them. Also: a table with
text that is not UTF-8 streams past it (strict decoding first, tolerant after the last good key)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.columnar_convert import NotColumnar
from shared.config import SourceConfig, TableConfig
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.dbapi_stream import SourceChunk
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import connect, discover, stream_rows
from shared.hashing import RowHasher
from shared.types import MAX_CELL_BYTES, arrow_value_converter

OVERSIZED_TEXT = "é" * (MAX_CELL_BYTES // 2 + 1)  # under the limit in characters, over it in UTF-8 bytes


def _source(path: Path, ddl: str, rows: list[tuple]) -> tuple[object, object]:
    with sqlite3.connect(path) as connection:
        connection.execute(ddl)
        marks = ", ".join("?" * len(rows[0]))
        connection.executemany(f"INSERT INTO t VALUES ({marks})", rows)
    engine = connect(SourceConfig(url=f"sqlite:///{path}"))
    return engine, discover(engine, TableConfig(name="t", key=["id"]))


@pytest.fixture(autouse=True)
def _dbapi_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """These cases inspect the DBAPI reader's chunks; tests/integration/test_arrow_reader.py runs the
    same hostile values through the Arrow reader against this one."""
    monkeypatch.setenv(READER_ENV, "dbapi")


HOSTILE = [
    ("amount DECIMAL", 1e30, "does not fit"),                         # more integer digits than NUMERIC has
    ("amount DECIMAL(60, 40)", "0.1234567890123456789012345678901234567891", "BIGNUMERIC"),
    ("note TEXT", OVERSIZED_TEXT, "per-cell limit"),
    ("blob BLOB", b"\x00" * (MAX_CELL_BYTES + 1), "per-cell limit"),
    ("day DATE", "0000-01-01", "year 0 is out of range"),             # before 0001-01-01
    ("at DATETIME", "0001-01-01 00:30:00+01:00", "outside the UTC range"),
    ("at DATETIME", "9999-12-31 23:30:00-01:00", "outside the UTC range"),
]


@pytest.mark.parametrize("ddl, hostile, reason", HOSTILE)
def test_hostile_values_are_quarantined_with_their_reason(tmp_path: Path, ddl: str, hostile: object,
                                                          reason: str) -> None:
    good = {"amount": 12, "note": "ok", "blob": b"\x01", "day": "2024-02-29", "at": "2024-02-29 12:00:00"}
    name = ddl.split()[0]
    engine, source = _source(tmp_path / "s.db", f"CREATE TABLE t (id INTEGER PRIMARY KEY, {ddl})",
                             [(1, good[name]), (2, hostile), (3, good[name])])
    try:
        [chunk] = list(stream_rows(engine, source, 10))
        assert isinstance(chunk, SourceChunk)
        preparer = ChunkPreparer(source.schema)
        with pytest.raises(NotColumnar):
            preparer._by_column(chunk.raw, chunk.processors)
        prepared, rejected = preparer(chunk)
    finally:
        engine.dispose()
    [entry] = rejected
    assert entry["key"] == {"id": "2"} and reason in str(entry["reason"])
    good_rows = [chunk.process(row) for row in chunk.raw if row[0] != 2]
    converters = [arrow_value_converter(c.bq_type) for c in source.schema.columns]
    hasher = RowHasher(source.schema.key_positions)
    expected = [hasher(tuple(convert(v) for convert, v in zip(converters, row, strict=True))) for row in good_rows]
    assert prepared.hashes == expected


def test_invalid_utf8_switches_to_tolerant_decoding_after_the_last_good_key(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    engine, source = _source(path, "CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT)",
                             [(i, f"row {i}") for i in range(1, 8)])
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE t SET label = CAST(x'ff61' AS TEXT) WHERE id = 5")
    try:
        chunks = list(stream_rows(engine, source, 2))
        rows = [row for chunk in chunks for row in chunk]
        prepared, rejected = ChunkPreparer(source.schema)(chunks[2])
        with engine.connect() as connection:  # the connection's own decoder is back
            assert connection.exec_driver_sql("SELECT label FROM t WHERE id = 5").scalar() == "\udcffa"
    finally:
        engine.dispose()
    assert [row[0] for row in rows] == list(range(1, 8))
    assert rows[4] == (5, "\udcffa") and rows[5] == (6, "row 6")
    assert [entry["key"] for entry in rejected] == [{"id": "5"}] and "surrogate" in str(rejected[0]["reason"])
    assert len(prepared) == 1
