"""MariaDB types whose driver values are not what BigQuery holds: TIME is a duration, YEAR a number,
BIT bytes, TIMESTAMP the session's wall clock. Against the real server on 127.0.0.1:3306."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from shared.config import SourceConfig, TableConfig
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import connect, discover, stream_rows

URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"


@pytest.fixture
def table(unique_name: str) -> Iterator[str]:
    name = f"mysql_types_{unique_name}"
    engine = sa.create_engine(URL)
    try:
        yield name
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()


def _create(name: str, columns: str, rows: str) -> None:
    engine = sa.create_engine(URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, {columns})")
        connection.exec_driver_sql(f"INSERT INTO {name} VALUES {rows}")
    engine.dispose()


def _read(table: str, chunk_rows: int) -> tuple[list[str], list[tuple], list[dict]]:
    """The BigQuery types of the table's columns, the rows kept and the rows quarantined, read
    `chunk_rows` at a time through the extractor's own connection."""
    engine = connect(SourceConfig(url=URL))
    try:
        source = discover(engine, TableConfig(name=table, key=["id"]))
        prepare = ChunkPreparer(source.schema)
        kept, rejected = [], []
        for chunk in stream_rows(engine, source, chunk_rows):
            prepared, quarantined = prepare(chunk)
            kept += prepared.rows
            rejected += quarantined
    finally:
        engine.dispose()
    return [c.bq_type for c in source.schema.columns], kept, rejected


def test_a_time_beyond_one_day_is_quarantined_not_folded_into_a_time_of_day(table: str) -> None:
    # SQLAlchemy's MySQL TIME drops a duration's days: 838:59:59 would land as 22:59:59.
    _create(table, "t TIME(6) NULL, y YEAR NULL",
            "(1, '12:34:56.5', 2024), (2, '23:59:59.999999', 1901), (3, '838:59:59', NULL), (4, '-00:00:01', 2155), "
            "(5, '24:00:00', 2000), (6, NULL, NULL)")
    types, kept, rejected = _read(table, 4)
    assert types == ["INT64", "TIME", "INT64"]
    assert kept == [(1, dt.time(12, 34, 56, 500000), 2024), (2, dt.time(23, 59, 59, 999999), 1901),
                    (6, None, None)]
    assert sorted(r["key"]["id"] for r in rejected) == ["3", "4", "5"]
    assert all(str(r["reason"]).startswith("ValueError: t:") for r in rejected), rejected


def test_bit_lands_as_a_flag_or_a_number(table: str) -> None:
    # the driver returns BIT as bytes, which neither BOOL nor INT64 takes: every row was quarantined
    _create(table, "flag BIT(1) NULL, bits BIT(8) NULL, wide BIT(64) NULL",
            "(1, b'1', b'1010', b'0111111111111111111111111111111111111111111111111111111111111111'), "
            "(2, b'0', b'0', NULL), (3, NULL, NULL, b'1000000000000000000000000000000000000000000000000000000000000000')")
    types, kept, quarantined = _read(table, 10)
    assert types == ["INT64", "BOOL", "INT64", "INT64"]
    assert kept == [(1, True, 10, 2**63 - 1), (2, False, 0, None)]
    assert [r["key"]["id"] for r in quarantined] == ["3"]  # 2^63 is beyond INT64: kept out, not wrapped


def test_set_and_enum_land_as_their_text(table: str) -> None:
    _create(table, "s SET('x', 'y', 'z') NULL, e ENUM('a', 'b') NULL", "(1, 'x,z', 'b'), (2, '', 'a'), (3, NULL, NULL)")
    types, kept, quarantined = _read(table, 2)
    assert types == ["INT64", "STRING", "STRING"]
    assert quarantined == []
    assert kept == [(1, "x,z", "b"), (2, "", "a"), (3, None, None)]


def test_a_timestamp_is_the_same_instant_whatever_the_servers_time_zone(table: str) -> None:
    # MySQL shows a TIMESTAMP in the session's time zone, which defaults to the server's: a server
    # 5 hours west of UTC would have landed 12:00 UTC as 07:00, and in a DATETIME
    _create(table, "ts TIMESTAMP(6) NULL, local DATETIME(6) NULL", "(1, '2024-06-01 12:00:00.5', '2024-06-01 12:00:00')")
    admin = sa.create_engine(URL)
    with admin.begin() as connection:
        default = connection.exec_driver_sql("SELECT @@global.time_zone").scalar_one()
        connection.exec_driver_sql("SET GLOBAL time_zone = '-05:00'")
    try:
        types, kept, quarantined = _read(table, 10)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"SET GLOBAL time_zone = '{default}'")
        admin.dispose()
    assert types == ["INT64", "TIMESTAMP", "DATETIME"]
    assert quarantined == []
    assert kept == [(1, dt.datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=dt.UTC), dt.datetime(2024, 6, 1, 12))]


def test_bigint_unsigned_lands_whole_in_numeric(table: str) -> None:
    # INT64 stops at 2**63-1: the upper half of BIGINT UNSIGNED was quarantined
    _create(table, "u BIGINT UNSIGNED NULL, s BIGINT NULL",
            "(1, 18446744073709551615, -9223372036854775808), (2, 9223372036854775808, 0), (3, NULL, NULL)")
    types, kept, quarantined = _read(table, 10)
    assert types == ["INT64", "NUMERIC", "INT64"] and quarantined == []
    assert kept == [(1, Decimal("18446744073709551615"), -9223372036854775808),
                    (2, Decimal("9223372036854775808"), 0), (3, None, None)]
