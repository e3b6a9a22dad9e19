"""The ADBC (Arrow) reader against its reference, the DBAPI reader: the same converted rows, hashes and
quarantined rows with their reasons, on SQLite and PostgreSQL, whatever the Arrow stream meets
(storage classes SQLite mixes, a column SQLite's per-batch type inference guessed wrong, text that is
not UTF-8, values to quarantine, types ADBC does not map exactly)."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from shared.config import SourceConfig, TableConfig
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import SourceError, connect, discover, stream_rows
from tests.unit.test_hostile_values import HOSTILE

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _read(url: str, table: str, chunk_rows: int, reader: str, monkeypatch: pytest.MonkeyPatch,
          lower: tuple | None = None, upper: tuple | None = None) -> tuple[pa.Table, list[dict], set[str]]:
    monkeypatch.setenv(READER_ENV, reader)
    engine = connect(SourceConfig(url=url))
    try:
        source = discover(engine, TableConfig(name=table))
        preparer = ChunkPreparer(source.schema)
        tables, rejected, kinds = [], [], set()
        for chunk in stream_rows(engine, source, chunk_rows, lower, upper):
            kinds.add(type(chunk).__name__)
            assert len(chunk) <= chunk_rows
            prepared, bad = preparer(chunk)
            tables.append(prepared.table)
            rejected += bad
        return pa.concat_tables(tables), rejected, kinds
    finally:
        engine.dispose()


def _both(url: str, table: str, chunk_rows: int, monkeypatch: pytest.MonkeyPatch,
          **bounds: tuple) -> tuple[pa.Table, list[dict], set[str]]:
    arrow, arrow_rejected, kinds = _read(url, table, chunk_rows, "arrow", monkeypatch, **bounds)
    reference, reference_rejected, reference_kinds = _read(url, table, chunk_rows, "dbapi", monkeypatch, **bounds)
    assert reference_kinds == {"SourceChunk"}
    assert arrow.equals(reference), _first_difference(arrow, reference)
    assert arrow_rejected == reference_rejected
    return arrow, arrow_rejected, kinds


def _first_difference(left: pa.Table, right: pa.Table) -> str:
    if left.num_rows != right.num_rows:
        return f"{left.num_rows} rows against {right.num_rows}"
    for name in left.column_names:
        a, b = left.column(name).to_pylist(), right.column(name).to_pylist()
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return f"{name} row {index}: {x!r} against {y!r}"
    return "schemas differ"


def _sqlite(path: Path, ddl: str, rows: list[tuple]) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(ddl)
        marks = ", ".join("?" * len(rows[0]))
        connection.exec_driver_sql(f"INSERT INTO t VALUES ({marks})", rows)
    engine.dispose()
    return url


SQLITE_DDL = ("CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, amount DECIMAL(12,2), qty INTEGER, ratio FLOAT, "
              "day DATE, at DATETIME, flag BOOLEAN, label NVARCHAR(40), note TEXT)")


def _sqlite_rows() -> Iterator[tuple]:
    for i in range(1, 61):
        yield (i, 12 if i % 3 == 0 else 12.25 + i,  # NUMERIC affinity stores 12.00 as an integer
               i * 7, i / 8, f"2024-03-{1 + i % 28:02d}", f"2024-03-01 10:{i % 60:02d}:00.{i:06d}",
               i % 2, f"Grüße {i} 東京", None if i <= 20 else f"note {i}")  # note: NULL for three chunks, then text


def test_sqlite_arrow_reader_matches_the_dbapi_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = list(_sqlite_rows())
    rows[24] = (*rows[24][:2], "many", *rows[24][3:])                # text in an INTEGER column
    rows[29] = (*rows[29][:7], b"\xff\xfe broken", rows[29][8])    # a BLOB in a TEXT column
    rows[32] = (*rows[32][:4], "not a date", *rows[32][5:])
    rows[34] = (rows[34][0], 2**60, *rows[34][2:])                   # beyond float64 and DECIMAL(12,2)
    rows[44] = (*rows[44][:6], 2, *rows[44][7:])                     # a boolean stored as 2: neither FALSE nor TRUE
    url = _sqlite(tmp_path / "s.db", SQLITE_DDL, rows)
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # text that is not UTF-8, stored as TEXT
        connection.exec_driver_sql("UPDATE t SET label = CAST(X'4F4BFF' AS TEXT) WHERE id = 40")
    engine.dispose()

    table, rejected, kinds = _both(url, "t", 7, monkeypatch)

    assert "ArrowChunk" in kinds
    assert table.num_rows == 60 - 6
    assert sorted(int(r["key"]["id"]) for r in rejected) == [25, 30, 33, 35, 40, 45]
    _both(url, "t", 7, monkeypatch, lower=(10,), upper=(31,))


@pytest.mark.parametrize("ddl, hostile, reason", HOSTILE)
def test_hostile_values_quarantined_as_the_dbapi_reader_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             ddl: str, hostile: object, reason: str) -> None:
    good = {"amount": 12, "note": "ok", "blob": b"\x01", "day": "2024-02-29", "at": "2024-02-29 12:00:00"}
    name = ddl.split()[0]
    url = _sqlite(tmp_path / "h.db", f"CREATE TABLE t (id INTEGER PRIMARY KEY, {ddl})",
                  [(1, good[name]), (2, hostile), (3, good[name])])

    table, rejected, _ = _both(url, "t", 10, monkeypatch)

    assert table.column("id").to_pylist() == [1, 3]
    assert [entry["key"] for entry in rejected] == [{"id": "2"}] and reason in str(rejected[0]["reason"])


def test_sqlite_text_key_ranges_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"k{i:03d}" if i % 2 else f"K{i:03d}", i, None if i < 30 else f"v{i}") for i in range(50)]
    url = _sqlite(tmp_path / "k.db", "CREATE TABLE t (code VARCHAR(10) NOT NULL PRIMARY KEY, n INTEGER, v TEXT)", rows)

    table, rejected, kinds = _both(url, "t", 4, monkeypatch)

    assert kinds == {"ArrowChunk"} and not rejected
    codes = table.column("code").to_pylist()
    assert codes == sorted(codes) and len(codes) == 50  # code-point order, every row once across restarts


def test_sqlite_column_without_exact_mapping_is_read_by_the_dbapi_reader(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _sqlite(tmp_path / "b.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)",
                  [(1, b"\x00\x01"), (2, "text in a BLOB column"), (3, None)])

    _, _, kinds = _both(url, "t", 2, monkeypatch)

    assert kinds == {"SourceChunk"}


@pytest.fixture
def pg_table(unique_name: str) -> Iterator[str]:
    name = f"arrow_probe_{unique_name}"
    engine = sa.create_engine(PG_URL)
    yield name
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    engine.dispose()


def test_postgresql_arrow_reader_matches_the_dbapi_reader(pg_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {pg_table} (id bigint PRIMARY KEY, small smallint, n integer, amount numeric(10,3), "
            "loose numeric, ratio double precision, flag boolean, label text, code varchar(8), fixed char(4), "
            "day date, at timestamp(6), seen timestamptz, payload bytea)")
        connection.exec_driver_sql(
            f"INSERT INTO {pg_table} SELECT i, (i %% 300)::smallint, i * 11, i * 1.125, "
            "CASE WHEN i = 7 THEN 'NaN'::numeric WHEN i %% 5 = 0 THEN NULL ELSE round(i / 7.0, 6) END, "
            "i / 3.0, i %% 2 = 0, "
            "'Grüße ' || i || ' 東京', 'c' || i, 'ab', DATE '2024-01-01' + i, "
            "TIMESTAMP '2024-01-01 00:00:00.000001' + i * INTERVAL '1 minute 0.5 second', "
            "TIMESTAMPTZ '2024-06-01 12:00:00+02' + i * INTERVAL '1 hour', decode(md5(i::text), 'hex') "
            "FROM generate_series(1, 40) AS i")
    engine.dispose()

    table, rejected, kinds = _both(PG_URL, pg_table, 6, monkeypatch)

    assert "ArrowChunk" in kinds
    assert table.num_rows == 39
    assert [int(r["key"]["id"]) for r in rejected] == [7]  # NaN is no BigQuery NUMERIC
    _both(PG_URL, pg_table, 6, monkeypatch, lower=(12,), upper=(30,))


def test_postgresql_composite_text_key_in_code_point_order(pg_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {pg_table} (region varchar(5), n int, v text, PRIMARY KEY (region, n))")
        connection.exec_driver_sql(
            f"INSERT INTO {pg_table} SELECT (ARRAY['a', 'B', 'b', 'Ä', 'A'])[1 + i %% 5], i, 'v' || i "
            "FROM generate_series(1, 30) AS i")
    engine.dispose()

    table, _, kinds = _both(PG_URL, pg_table, 4, monkeypatch)

    assert kinds == {"ArrowChunk"}
    keys = list(zip(table.column("region").to_pylist(), table.column("n").to_pylist(), strict=True))
    assert keys == sorted(keys) and len(keys) == 30


def test_postgresql_bounds_written_into_the_sql_select_what_parameters_do(pg_table: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The Arrow reader writes key bounds into the SQL (a statement with parameters is read in one
    batch): quotes, backslashes, percent signs and timestamps bound exactly as the DBAPI reader's
    parameters do, under a session that reads backslashes in literals as escapes."""
    engine = sa.create_engine(PG_URL)
    names = ["a", "o'neil", "back\\slash", "50%", "x'; DROP TABLE t; --", "Ä", "z\\'"]
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {pg_table} (name text, at timestamp, v int, PRIMARY KEY (name, at))")
        for i, name in enumerate(names):
            connection.execute(sa.text(f"INSERT INTO {pg_table} VALUES (:name, :at, :v)"),
                               [{"name": name, "at": dt.datetime(2024, 1, 1, 0, 0, 0, j), "v": i} for j in range(3)])
    engine.dispose()
    url = f"{PG_URL}?options=-c%20standard_conforming_strings%3Doff"
    every, _, _ = _both(url, pg_table, 2, monkeypatch)
    keys = list(zip(every.column("name").to_pylist(), every.column("at").to_pylist(), strict=True))
    for lower, upper in [(keys[3], keys[16]), (keys[7], None), (keys[0], keys[-2])]:
        bounded, _, kinds = _both(url, pg_table, 2, monkeypatch, lower=lower, upper=upper)
        assert kinds == {"ArrowChunk"}
        got = list(zip(bounded.column("name").to_pylist(), bounded.column("at").to_pylist(), strict=True))
        assert got == [k for k in keys if k > lower and (upper is None or k <= upper)]


def test_postgresql_numeric_key_read_as_text_keeps_numeric_order(pg_table: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Numerics are selected as their text; the key is still ordered and bounded as a number (as text,
    '10.25' < '9.50')."""
    engine = sa.create_engine(PG_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {pg_table} (k numeric(8,2) PRIMARY KEY, v numeric(6,1))")
        connection.exec_driver_sql(
            f"INSERT INTO {pg_table} SELECT (i * 7.25 - 50)::numeric(8,2), i / 10.0 FROM generate_series(1, 30) AS i")
    engine.dispose()

    table, _, kinds = _both(PG_URL, pg_table, 4, monkeypatch)

    assert kinds == {"ArrowChunk"}
    keys = table.column("k").to_pylist()
    assert keys == sorted(keys) and len(keys) == 30
    bounded, _, _ = _both(PG_URL, pg_table, 4, monkeypatch, lower=(Decimal("9.5"),), upper=(Decimal("100.25"),))
    assert bounded.column("k").to_pylist() == [k for k in keys if Decimal("9.5") < k <= Decimal("100.25")]


def test_postgresql_type_without_exact_mapping_is_read_by_the_dbapi_reader(
        pg_table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as connection:  # float4: psycopg2 parses its shortest text, ADBC widens the binary float
        connection.exec_driver_sql(f"CREATE TABLE {pg_table} (id int PRIMARY KEY, r real)")
        connection.exec_driver_sql(f"INSERT INTO {pg_table} VALUES (1, 1.1), (2, NULL), (3, 3.3)")
    engine.dispose()

    table, _, kinds = _both(PG_URL, pg_table, 2, monkeypatch)

    assert kinds == {"SourceChunk"}
    assert table.column("r").to_pylist() == [1.1, None, 3.3]


def test_postgresql_connection_terminated_mid_stream_resumes_after_the_last_key(
        pg_table: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rows = 200_000  # ~50 MB of COPY output: far more than the socket buffers hold when the backend dies
    engine = sa.create_engine(PG_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {pg_table} (id int PRIMARY KEY, filler text)")
        connection.exec_driver_sql(f"INSERT INTO {pg_table} SELECT i, repeat(md5(i::text), 8) "
                                   "FROM generate_series(1, %s) AS i", (rows,))
    application = f"terminated-{pg_table}"
    caplog.set_level(logging.INFO, logger="shared.extractor.arrow_stream")
    monkeypatch.setenv(READER_ENV, "arrow")
    source_engine = connect(SourceConfig(url=f"{PG_URL}?application_name={application}"))
    try:
        source = discover(source_engine, TableConfig(name=pg_table))
        keys, kinds, terminated = [], set(), []
        for chunk in stream_rows(source_engine, source, 5_000):
            kinds.add(type(chunk).__name__)
            keys += chunk.columns[0].to_pylist()
            if not terminated:
                with engine.connect() as admin:
                    terminated = admin.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                        (application,)).all()
                assert terminated and all(row[0] for row in terminated)
    finally:
        source_engine.dispose()
        engine.dispose()

    assert keys == list(range(1, rows + 1))  # every row exactly once, in key order
    assert kinds == {"ArrowChunk"}
    assert "Arrow stream interrupted" in caplog.text and "resuming after the last key" in caplog.text


def test_a_reader_name_not_known_is_refused_not_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _sqlite(tmp_path / "s.db", SQLITE_DDL, list(_sqlite_rows()))
    with pytest.raises(SourceError, match="MATRIX_SOURCE_READER='dbpai' is not a reader: use arrow"):
        _read(url, "t", 7, "dbpai", monkeypatch)
