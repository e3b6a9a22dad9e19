"""The extractor against a real SQL Server: every type, discovered, streamed, converted, round-tripped.

Runs only when ``MSSQL_URL`` names a database the login may create tables in, e.g.
``MSSQL_URL=mssql+pymssql://sa:Secret123!@localhost:1433/tempdb``. Each test creates its own table
(random name, ``dbo`` schema) and drops it afterwards.

Values are inserted as T-SQL literals, not driver parameters, so what is tested is how the server's
values come back through pymssql and the extractor's projections, not how pymssql sends them.
"""
from __future__ import annotations

import datetime as dt
import os
import struct
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa
import pytest
from sqlalchemy.engine import Engine

from shared.config import SourceConfig, TableConfig
from shared.extractor.source import SourceTable, connect, discover, stream_rows
from shared.hashing import RowHasher
from shared.identifiers import bigquery_column_for
from shared.mssql.select import select_statement
from shared.types import arrow_type, arrow_value_converter

MSSQL_URL = os.environ.get("MSSQL_URL", "")
pytestmark = pytest.mark.skipif(not MSSQL_URL, reason="MSSQL_URL is not set (no SQL Server to test against)")

UTC = dt.UTC
WEIRD = 'we]ird; "col" ü'

# name -> (declaration, literal for row 1, expected converted value, source_type, bq_type)
TYPES: dict[str, tuple[str, str, object, str, str]] = {
    "c_bit": ("bit", "1", True, "bit", "BOOL"),
    "c_tinyint": ("tinyint", "255", 255, "tinyint", "INT64"),
    "c_smallint": ("smallint", "-32768", -32768, "smallint", "INT64"),
    "c_int": ("int", "-2147483648", -2147483648, "int", "INT64"),
    "c_bigint": ("bigint", "9223372036854775807", 9223372036854775807, "bigint", "INT64"),
    "c_dec_12_2": ("decimal(12,2)", "1234567890.12", Decimal("1234567890.12"), "decimal(12,2)", "NUMERIC"),
    "c_num_38_0": ("numeric(38,0)", "12345678901234567890123456789012345678",
                   Decimal("12345678901234567890123456789012345678"), "numeric(38,0)", "BIGNUMERIC"),
    "c_dec_38_9": ("decimal(38,9)", "12345678901234567890123456789.123456789",
                   Decimal("12345678901234567890123456789.123456789"), "decimal(38,9)", "NUMERIC"),
    "c_dec_38_10": ("decimal(38,10)", "1234567890123456789012345678.1234567890",
                    Decimal("1234567890123456789012345678.123456789"), "decimal(38,10)", "BIGNUMERIC"),
    "c_money": ("money", "922337203685477.5807", Decimal("922337203685477.5807"), "money", "NUMERIC"),
    "c_smallmoney": ("smallmoney", "-214748.3648", Decimal("-214748.3648"), "smallmoney", "NUMERIC"),
    "c_float": ("float", "1.7976931348623157E308", 1.7976931348623157e308, "float", "FLOAT64"),
    "c_real": ("real", "0.1", struct.unpack("f", struct.pack("f", 0.1))[0], "real", "FLOAT64"),
    "c_date": ("date", "'0001-01-01'", dt.date(1, 1, 1), "date", "DATE"),
    "c_time": ("time(7)", "'23:59:59.9999999'", dt.time(23, 59, 59, 999999), "time(7)", "TIME"),
    "c_datetime": ("datetime", "'2024-02-29T12:34:56.997'", dt.datetime(2024, 2, 29, 12, 34, 56, 997000),
                   "datetime", "DATETIME"),
    "c_datetime2": ("datetime2(7)", "'9999-12-31T23:59:59.9999999'", dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                    "datetime2(7)", "DATETIME"),
    "c_smalldatetime": ("smalldatetime", "'2079-06-06T23:59:00'", dt.datetime(2079, 6, 6, 23, 59),
                        "smalldatetime", "DATETIME"),
    "c_dto": ("datetimeoffset(7)", "'2024-01-02T03:04:05.1234567+05:30'",
              dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=UTC), "datetimeoffset(7)", "TIMESTAMP"),
    "c_char": ("char(5)", "'ab'", "ab   ", "char(5)", "STRING"),
    "c_varchar": ("varchar(20)", "'plain ascii'", "plain ascii", "varchar(20)", "STRING"),
    "c_nchar": ("nchar(3)", "N'ü'", "ü  ", "nchar(3)", "STRING"),
    "c_nvarchar_max": ("nvarchar(max)", "N'😀 ünïcode ' + REPLICATE(CAST(N'x' AS nvarchar(max)), 5000)",
                       "😀 ünïcode " + "x" * 5000, "nvarchar(max)", "STRING"),
    "c_text": ("text", "'legacy text'", "legacy text", "text", "STRING"),
    "c_ntext": ("ntext", "N'légacy ñ'", "légacy ñ", "ntext", "STRING"),
    "c_binary": ("binary(4)", "0x01020304", b"\x01\x02\x03\x04", "binary(4)", "BYTES"),
    "c_varbinary_max": ("varbinary(max)", "0x00FF", b"\x00\xff", "varbinary(max)", "BYTES"),
    "c_image": ("image", "0xDEADBEEF", b"\xde\xad\xbe\xef", "image", "BYTES"),
    "c_guid": ("uniqueidentifier", "'6F9619FF-8B86-D011-B42D-00C04FC964FF'", "6f9619ff-8b86-d011-b42d-00c04fc964ff",
               "uniqueidentifier", "STRING"),
    "c_xml": ("xml", "N'<a b=\"1\"><c>ü</c></a>'", None, "xml", "STRING"),  # checked by structure below
    "c_variant": ("sql_variant", "CAST(42 AS int)", "42", "sql_variant", "STRING"),
    "c_hierarchy": ("hierarchyid", "CAST('/1/2/' AS hierarchyid)", "/1/2/", "hierarchyid", "STRING"),
    "c_geography": ("geography", "geography::Point(47.65, -122.34, 4326)", "POINT (-122.34 47.65)", "geography",
                    "GEOGRAPHY"),
    "c_geometry": ("geometry", "geometry::STGeomFromText('LINESTRING (0 0, 1 1)', 0)", "SRID=0;LINESTRING (0 0, 1 1)",
                   "geometry", "STRING"),
}
# sql_variant holding other base types: (literal, check of the converted text)
VARIANTS: dict[int, tuple[str, object]] = {
    3: ("CAST('2024-01-02T03:04:05.997' AS datetime)", lambda v: v.startswith("2024-01-02 03:04:05.997")),
    4: ("CAST(12.3456 AS money)", lambda v: Decimal(v) == Decimal("12.3456")),
    5: ("CAST(0.1 AS float)", lambda v: float(v) == 0.1),
    6: ("CAST(0x0102 AS varbinary(10))", lambda v: v.upper() == "0X0102"),
    7: ("CAST(N'héllo' AS nvarchar(10))", lambda v: v == "héllo"),
    8: ("CAST('2024-01-02' AS date)", lambda v: v == "2024-01-02"),
    9: ("CAST('2024-01-02T03:04:05.1234567+05:30' AS datetimeoffset(7))",
        lambda v: dt.datetime.fromisoformat(v) == dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=UTC)),
}


def q(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = connect(SourceConfig(url=MSSQL_URL))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def table_name(engine: Engine) -> Iterator[str]:
    name = f"ms_sync_test_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"IF OBJECT_ID(N'dbo.{name}', N'U') IS NOT NULL DROP TABLE [dbo].[{name}]")


def create_every_type_table(engine: Engine, name: str) -> None:
    declarations = ",\n".join(f"    {q(column)} {spec[0]} NULL" for column, spec in TYPES.items())
    names = ", ".join(q(c) for c in TYPES)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE [dbo].[{name}] (\n    [id] int NOT NULL PRIMARY KEY,\n{declarations},\n"
            f"    [c_rowversion] rowversion,\n    [c_computed] AS ([c_int] * 2),\n    {q(WEIRD)} nvarchar(10) NULL\n)")
        literals = ", ".join(spec[1] for spec in TYPES.values())
        connection.exec_driver_sql(
            f"INSERT INTO [dbo].[{name}] ([id], {names}, {q(WEIRD)}) VALUES (1, {literals}, N'ok')")
        connection.exec_driver_sql(f"INSERT INTO [dbo].[{name}] ([id]) VALUES (2)")
        for row_id, (literal, _) in VARIANTS.items():
            connection.exec_driver_sql(f"INSERT INTO [dbo].[{name}] ([id], [c_variant]) VALUES ({row_id}, {literal})")


def extract(engine: Engine, source: SourceTable, chunk_rows: int = 2) -> list[tuple]:
    """discover -> stream_rows -> converters -> Arrow arrays and hashes, as the snapshot writer does."""
    converters = [arrow_value_converter(c.bq_type) for c in source.schema.columns]
    rows = [tuple(convert(v) for convert, v in zip(converters, row, strict=True))
            for chunk in stream_rows(engine, source, chunk_rows) for row in chunk]
    for position, column in enumerate(source.schema.columns):
        pa.array([row[position] for row in rows], type=arrow_type(column.bq_type))
    hasher = RowHasher(source.schema.key_positions)
    assert len({hasher(row)[0] for row in rows}) == len(rows)
    return rows


def test_every_type_is_discovered_and_round_trips(engine: Engine, table_name: str) -> None:
    create_every_type_table(engine, table_name)
    source = discover(engine, TableConfig(name=f"dbo.{table_name}", key=["id"]))
    columns = source.schema.columns
    assert [c.name for c in columns] == ["id", *TYPES, WEIRD]  # rowversion and computed left out
    for column in columns[1:-1]:
        assert (column.source_type, column.bq_type) == TYPES[column.name][3:], column.name
    assert source.schema.column(WEIRD).bq_name == bigquery_column_for(WEIRD)

    rows = extract(engine, source)
    assert [row[0] for row in rows] == [1, 2, *VARIANTS]
    first = dict(zip([c.name for c in columns], rows[0], strict=True))
    for name, (*_, expected, _source_type, _bq_type) in TYPES.items():
        if name != "c_xml":
            assert first[name] == expected, name
    assert first["c_xml"].startswith("<a") and 'b="1"' in first["c_xml"] and "<c>ü</c>" in first["c_xml"]
    assert first[WEIRD] == "ok"
    assert all(value is None for value in rows[1][1:])
    variant = [c.name for c in columns].index("c_variant")
    for row in rows[2:]:
        check = VARIANTS[row[0]][1]
        assert check(row[variant]), (row[0], row[variant])  # type: ignore[operator]


def test_key_ranges_and_binary_text_order(engine: Engine, table_name: str) -> None:
    codes = ["a", "B", "b", "É", "e", "z", "Zz", "a b", "ab"]
    with engine.begin() as connection:
        connection.exec_driver_sql(
            # Case-sensitive but not binary: the table's own order ('a' < 'B' < 'b') is not Python's.
            f"CREATE TABLE [dbo].[{table_name}] ([code] nvarchar(20) COLLATE Latin1_General_100_CS_AS NOT NULL, "
            f"[n] int NOT NULL, "
            f"[guid] uniqueidentifier NOT NULL DEFAULT NEWID(), PRIMARY KEY ([code], [n]))")
        for code in codes:
            for n in (1, 2):
                connection.exec_driver_sql(
                    f"INSERT INTO [dbo].[{table_name}] ([code], [n]) VALUES (N'{code}', {n})")
    source = discover(engine, TableConfig(name=f"dbo.{table_name}", key=["code", "n"]))
    keys = [row[:2] for row in extract(engine, source, chunk_rows=3)]
    assert keys == sorted((c, n) for c in codes for n in (1, 2))  # Python's order, not the collation's

    statement = select_statement("dbo", table_name, source.schema.columns, ["code", "n"],
                                 lower=("B", 2), upper=("e", 1))
    with engine.connect() as connection:
        got = [tuple(r[:2]) for r in connection.execute(statement.clause())]
    assert got == [k for k in keys if ("B", 2) < k <= ("e", 1)]

    by_guid = discover(engine, TableConfig(name=f"dbo.{table_name}", key=["guid"]))
    guids = [row[2] for row in extract(engine, by_guid, chunk_rows=4)]
    assert guids == sorted(guids) and len(set(guids)) == len(guids)
