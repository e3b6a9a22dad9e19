"""A SQLite table declared with SQL Server's type names (a local copy of a Matrix table) lands with
the types SQL Server means; SQLAlchemy alone gave most of them SQLite's NUMERIC affinity, and every
row holding text there was quarantined. TIME(7) and DATETIME(3) are times without a zone, not
types refused as zoned."""
from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import SourceConfig, TableConfig
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import connect, discover, stream_rows

DDL = """CREATE TABLE orders (id INT PRIMARY KEY, guid UNIQUEIDENTIFIER, placed DATETIME2(7), offset_at DATETIMEOFFSET,
    small SMALLDATETIME, paid BIT, doc "VARBINARY(MAX)", total MONEY, fee SMALLMONEY, spec XML, node HIERARCHYID,
    anything SQL_VARIANT, at "TIME(7)", stamped "DATETIME(3)", place GEOGRAPHY)"""
ROWS = [
    (1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-01-01 10:00:00.1234567", "2024-01-01 10:00:00 +02:00",
     "2024-01-01 10:00:00", 1, b"\x00\xff", 12.3456, 1.5, "<a/>", "/1/", "text", "10:00:00.1234567",
     "2024-01-01 10:00:00.123", "POINT(1 2)"),
    (2, None, "2024-02-29 23:59:59", None, None, 0, None, None, None, None, None, 5, "23:59:59", None, None),
]
TYPES = {"id": "INT64", "guid": "STRING", "placed": "DATETIME", "offset_at": "STRING", "small": "DATETIME",
         "paid": "BOOL", "doc": "BYTES", "total": "NUMERIC", "fee": "NUMERIC", "spec": "STRING", "node": "STRING",
         "anything": "STRING", "at": "TIME", "stamped": "DATETIME", "place": "STRING"}


@pytest.mark.parametrize("reader", ["arrow", "dbapi"])
def test_sql_server_type_names_in_sqlite_land_as_sql_server_means(
    tmp_path: Path, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(READER_ENV, reader)
    database = tmp_path / "matrix.db"
    with sqlite3.connect(database) as connection:
        connection.execute(DDL)
        connection.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(ROWS[0]))})", ROWS)
    engine = connect(SourceConfig(url=f"sqlite:///{database}"))
    try:
        source = discover(engine, TableConfig(name="orders"))
        assert {c.name: c.bq_type for c in source.schema.columns} == TYPES
        preparer = ChunkPreparer(source.schema)
        rows, rejected = [], []
        for chunk in stream_rows(engine, source, 100, chunk_bytes=1 << 20):
            prepared, bad = preparer(chunk)
            rows += prepared.table.to_pylist()
            rejected += bad
    finally:
        engine.dispose()
    assert rejected == []
    first, second = rows
    assert (first["guid"], first["placed"], first["offset_at"]) == (
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", dt.datetime(2024, 1, 1, 10, 0, 0, 123456), "2024-01-01 10:00:00 +02:00")
    assert (first["paid"], first["doc"], first["total"], first["fee"]) == (True, b"\x00\xff", Decimal("12.3456"),
                                                                           Decimal("1.5"))
    assert (first["at"], first["stamped"], first["place"]) == (dt.time(10, 0, 0, 123456),
                                                               dt.datetime(2024, 1, 1, 10, 0, 0, 123000), "POINT(1 2)")
    assert (second["paid"], second["anything"], second["at"]) == (False, "5", dt.time(23, 59, 59))
