"""PostgreSQL values psycopg2 would change: dates and times BigQuery cannot hold ('infinity', BC, a
year past 9999, 24:00:00) are quarantined, not turned into other values and not fatal to the table,
through either reader; json, jsonb, interval and the types BigQuery has no counterpart for (arrays,
inet, ranges, ...) land as PostgreSQL's own text, whatever zone and styles the server or role sets;
money as NUMERIC. Against the real server on 127.0.0.1:5432."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import psycopg2
import pytest

from shared.config import SourceConfig, TableConfig
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import SourceError, connect, discover, stream_rows

URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# id -> (d date, ts timestamp, tz timestamptz); the values outside BigQuery's range on rows 2 to 7
ROWS = {1: ("2024-02-29", "2024-02-29 23:59:59.999999", "2024-01-01 12:00:00+05:30"),
        2: ("infinity", None, None), 3: (None, "-infinity", None), 4: (None, None, "infinity"),
        5: ("0044-03-15 BC", None, None), 6: (None, "10000-01-01 00:00:00", None),
        7: (None, None, "2024-01-01 00:00:00+00 BC"), 8: ("0001-01-01", "9999-12-31 23:59:59.999999", None)}
KEPT = [(1, dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
         dt.datetime(2024, 1, 1, 6, 30, tzinfo=dt.UTC)),
        (8, dt.date(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None)]


def _execute(sql: str, params: tuple = ()) -> None:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


@pytest.fixture
def table(unique_name: str) -> Iterator[str]:
    name = f"pg_temporal_{unique_name}"
    yield name
    _execute(f"DROP TABLE IF EXISTS {name}")


def _read(table: str, width: int = 4, url: str = URL) -> tuple[set[str], list[tuple], list[str]]:
    """The kinds of chunk read, the rows kept (their first `width` columns) and the quarantined keys."""
    engine = connect(SourceConfig(url=url))
    try:
        source = discover(engine, TableConfig(name=table, key=["id"]))
        prepare = ChunkPreparer(source.schema)
        kinds, kept, rejected = set(), [], []
        for chunk in stream_rows(engine, source, 3):
            prepared, quarantined = prepare(chunk)
            kinds.add(type(chunk).__name__)
            kept += [row[:width] for row in prepared.rows]
            rejected += [r["key"]["id"] for r in quarantined]
        return kinds, kept, rejected
    finally:
        engine.dispose()


@pytest.mark.parametrize("with_time", [False, True], ids=["arrow-reader", "dbapi-reader"])
def test_unrepresentable_dates_and_times_are_quarantined(table: str, with_time: bool) -> None:
    # PostgreSQL time is not read through ADBC: a time column sends the table through psycopg2
    _execute(f"CREATE TABLE {table} (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz"
             + (", t time)" if with_time else ")"))
    for key, values in ROWS.items():
        _execute(f"INSERT INTO {table} (id, d, ts, tz) VALUES (%s, %s, %s, %s)", (key, *values))
    if with_time:
        _execute(f"UPDATE {table} SET t = CASE id WHEN 1 THEN '23:59:59.999999'::time ELSE NULL END")
        _execute(f"INSERT INTO {table} (id, t) VALUES (9, '24:00:00')")

    kinds, kept, rejected = _read(table)

    assert kinds == ({"SourceChunk"} if with_time else {"ArrowChunk"})
    assert kept == KEPT
    assert sorted(rejected) == ["2", "3", "4", "5", "6", "7"] + (["9"] if with_time else [])


def test_json_jsonb_and_interval_land_as_postgresql_text(table: str) -> None:
    _execute(f"CREATE TABLE {table} (id int PRIMARY KEY, j json, jb jsonb, span interval)")
    _execute(f"""INSERT INTO {table} VALUES (1, '{{"b": 1.50, "a": [true, null]}}', '{{"b": 1.50, "a": "ü"}}',
                 '1 mon 2 days 03:04:05.5'), (2, 'null', '[]', '-3 years'), (3, NULL, NULL, NULL)""")

    _kinds, kept, rejected = _read(table, width=4)

    assert rejected == []
    assert kept == [(1, '{"b": 1.50, "a": [true, null]}', '{"a": "ü", "b": 1.50}', "1 mon 2 days 03:04:05.5"),
                    (2, "null", "[]", "-3 years"), (3, None, None, None)]


@pytest.fixture
def odd_role(table: str) -> Iterator[str]:
    """A login whose session defaults are not the extractor's: another zone, date and interval style."""
    role = f"matrix_{table}"
    _execute(f"CREATE ROLE {role} LOGIN")
    for setting in ("TimeZone = 'America/New_York'", "DateStyle = 'SQL, DMY'", "IntervalStyle = 'iso_8601'"):
        _execute(f"ALTER ROLE {role} SET {setting}")
    yield role
    _execute(f"DROP OWNED BY {role}")
    _execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("with_interval", [False, True], ids=["arrow-reader", "dbapi-reader"])
def test_types_without_a_bigquery_counterpart_land_as_their_text(table: str, odd_role: str,
                                                                  with_interval: bool) -> None:
    # ADBC maps no interval: an interval column sends the table through psycopg2
    _execute(f"""CREATE TABLE {table} (id int PRIMARY KEY, tags text[], days date[], address inet, net cidr,
                 mac macaddr, flags bit(3), during tstzrange, price money, words tsvector, span interval)""")
    _execute(f"""INSERT INTO {table} (id, tags, days, address, net, mac, flags, during, price, words) VALUES
                 (1, '{{"a b",c,NULL}}', '{{2024-02-29}}', '10.0.0.1', '192.168.0.0/16', '08:00:2b:01:02:03', B'101',
                  '[2024-01-01 00:00+00,2024-01-02 00:00+00)', 1234.5, 'a fat cat'),
                 (2, '{{}}', NULL, '::1', NULL, NULL, B'000', 'empty', -0.01, ''),
                 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""")
    if with_interval:
        _execute(f"UPDATE {table} SET span = CASE id WHEN 1 THEN '1 day 02:00:00'::interval WHEN 2 THEN '-1 mon' END")
    else:
        _execute(f"ALTER TABLE {table} DROP COLUMN span")
    _execute(f"GRANT SELECT ON {table} TO {odd_role}")

    kinds, kept, rejected = _read(table, width=11, url=URL.replace("postgres@", f"{odd_role}@"))

    assert kinds == ({"SourceChunk"} if with_interval else {"ArrowChunk"})
    assert rejected == []
    span = {1: ("1 day 02:00:00",), 2: ("-1 mons",), 3: (None,)} if with_interval else {1: (), 2: (), 3: ()}
    assert kept == [
        (1, '{"a b",c,NULL}', "{2024-02-29}", "10.0.0.1/32", "192.168.0.0/16", "08:00:2b:01:02:03", "101",
         '["2024-01-01 00:00:00+00","2024-01-02 00:00:00+00")', Decimal("1234.50"), "'a' 'cat' 'fat'", *span[1]),
        (2, "{}", None, "::1/128", None, None, "000", "empty", Decimal("-0.01"), "", *span[2]),
        (3, None, None, None, None, None, None, None, None, None, *span[3])]


def test_a_column_without_a_bigquery_type_names_the_table_column_and_type(table: str) -> None:
    _execute(f"CREATE TABLE {table} (id int PRIMARY KEY, opens timetz)")  # a time with an offset is no instant
    engine = connect(SourceConfig(url=URL))
    try:
        with pytest.raises(SourceError) as error:
            discover(engine, TableConfig(name=table, key=["id"]))
    finally:
        engine.dispose()
    assert str(error.value) == (f"table {table!r}, column 'opens': no BigQuery type for postgresql type "
                                "time with time zone")


@pytest.fixture(params=["arrow", "dbapi"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "dbapi":
        monkeypatch.setenv("MATRIX_SOURCE_READER", "dbapi")
    return str(request.param)


def _rows_one_chunk_at_a_time(table: str) -> list[tuple]:
    """The table's rows read a row a chunk, so the read resumes after every key."""
    engine = connect(SourceConfig(url=URL))
    try:
        source = discover(engine, TableConfig(name=table))
        return [tuple(row) for chunk in stream_rows(engine, source, 1) for row in chunk]
    finally:
        engine.dispose()


def test_a_key_read_as_text_is_ordered_and_resumed_as_that_text(table: str, reader: str) -> None:
    _execute(f"CREATE TABLE {table} (id inet PRIMARY KEY, v text)")
    _execute(f"INSERT INTO {table} VALUES ('10.0.0.2', 'a'), ('10.0.0.10', 'b'), ('::1', 'c'), ('192.168.1.1', 'd')")

    keys = [row[0] for row in _rows_one_chunk_at_a_time(table)]

    assert keys == ["10.0.0.10/32", "10.0.0.2/32", "192.168.1.1/32", "::1/128"]


def test_an_enum_key_is_ordered_by_its_text_not_its_declaration(table: str, reader: str) -> None:
    # an enum takes no COLLATE: ordering it as text failed the read of the whole table
    _execute(f"CREATE TYPE {table}_mood AS ENUM ('sad', 'ok', 'Happy')")
    try:
        _execute(f"CREATE TABLE {table} (m {table}_mood, n int, PRIMARY KEY (m, n))")
        _execute(f"INSERT INTO {table} VALUES ('sad', 1), ('ok', 2), ('Happy', 1), ('ok', 1)")
        keys = _rows_one_chunk_at_a_time(table)
    finally:
        _execute(f"DROP TABLE IF EXISTS {table}")
        _execute(f"DROP TYPE {table}_mood")
    assert keys == [("Happy", 1), ("ok", 1), ("ok", 2), ("sad", 1)]


def test_columns_whose_names_differ_only_in_case_fail_their_table_by_name(table: str) -> None:
    """PostgreSQL keeps "Name" and name apart; BigQuery column names ignore case."""
    _execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "Name" text, name text)')
    engine = connect(SourceConfig(url=URL))
    try:
        with pytest.raises(SourceError) as error:
            discover(engine, TableConfig(name=table))
    finally:
        engine.dispose()
    assert str(error.value) == (f"table {table!r}: columns 'Name', 'name' would be one BigQuery column "
                                "(BigQuery column names ignore case); replicate a view that renames them")


def test_domain_columns_land_as_the_types_they_are_declared_over(table: str, reader: str) -> None:
    domains = {"int": "int", "amount": "numeric(10,2) CHECK (VALUE >= 0)", "at": "timestamptz",
               "code": "varchar(12)", "again": f"{table}_int"}  # a domain of a domain
    try:
        for name, declaration in domains.items():
            _execute(f"CREATE DOMAIN {table}_{name} AS {declaration}")
        _execute(f"CREATE TABLE {table} (id {table}_again PRIMARY KEY, amount {table}_amount, at {table}_at, "
                 f"code {table}_code)")
        _execute(f"INSERT INTO {table} VALUES (2, 1.5, '2024-01-01 08:00+02', 'b'), (1, NULL, NULL, NULL)")
        engine = connect(SourceConfig(url=URL))
        try:
            source = discover(engine, TableConfig(name=table))
            rows = [tuple(row) for chunk in stream_rows(engine, source, 10) for row in chunk]
        finally:
            engine.dispose()
    finally:
        _execute(f"DROP TABLE IF EXISTS {table}")
        for name in reversed(domains):
            _execute(f"DROP DOMAIN IF EXISTS {table}_{name}")
    assert [(c.source_type, c.bq_type, c.precision, c.scale, c.length) for c in source.schema.columns] == [
        (f"{table}_again", "INT64", None, None, None), (f"{table}_amount", "NUMERIC", 10, 2, None),
        (f"{table}_at", "TIMESTAMP", None, None, None), (f"{table}_code", "STRING", None, None, 12)]
    assert rows == [(1, None, None, None),
                    (2, Decimal("1.50"), dt.datetime(2024, 1, 1, 6, 0, tzinfo=dt.UTC), "b")]
