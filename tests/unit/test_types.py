"""Type mapping (source -> BigQuery -> Arrow) and driver value conversion of `shared.types`."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, postgresql

from shared.hashing import canonical_text
from shared.types import (
    TypeMappingError,
    arrow_type,
    arrow_value_converter,
    bigquery_type_for_mssql,
    bigquery_type_for_sqlalchemy,
    type_parameters,
)

UTC = dt.timezone.utc
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))

# --- SQL Server type names ----------------------------------------------------------------------

MSSQL_CASES = [
    ("bit", None, None, "BOOL"),
    ("tinyint", None, None, "INT64"),
    ("smallint", None, None, "INT64"),
    ("int", None, None, "INT64"),
    ("bigint", None, None, "INT64"),
    ("decimal", None, None, "NUMERIC"),  # SQL Server's default decimal(18, 0)
    ("decimal", 12, 2, "NUMERIC"),
    ("numeric", 29, 0, "NUMERIC"),
    ("numeric", 30, 0, "BIGNUMERIC"),
    ("decimal", 38, 9, "NUMERIC"),  # p - s = 29
    ("decimal", 38, 10, "BIGNUMERIC"),
    ("decimal", 38, 0, "BIGNUMERIC"),
    ("decimal", 10, 9, "NUMERIC"),
    ("decimal", 10, 10, "BIGNUMERIC"),
    ("decimal", 38, 38, "BIGNUMERIC"),
    ("decimal", 1, 0, "NUMERIC"),
    ("money", None, None, "NUMERIC"),
    ("smallmoney", None, None, "NUMERIC"),
    ("float", 53, None, "FLOAT64"),
    ("real", 24, None, "FLOAT64"),
    ("date", None, None, "DATE"),
    ("time", None, 7, "TIME"),
    ("datetime", None, None, "DATETIME"),
    ("datetime2", None, 7, "DATETIME"),
    ("smalldatetime", None, None, "DATETIME"),
    ("datetimeoffset", None, 7, "TIMESTAMP"),
    ("char", None, None, "STRING"),
    ("varchar", None, None, "STRING"),
    ("nchar", None, None, "STRING"),
    ("nvarchar", None, None, "STRING"),
    ("text", None, None, "STRING"),
    ("ntext", None, None, "STRING"),
    ("xml", None, None, "STRING"),
    ("sysname", None, None, "STRING"),
    ("binary", None, None, "BYTES"),
    ("varbinary", None, None, "BYTES"),
    ("image", None, None, "BYTES"),
    ("rowversion", None, None, "BYTES"),
    ("timestamp", None, None, "BYTES"),
    ("uniqueidentifier", None, None, "STRING"),
    ("sql_variant", None, None, "STRING"),
    ("hierarchyid", None, None, "STRING"),
    ("geography", None, None, "GEOGRAPHY"),
    ("geometry", None, None, "STRING"),
    ("NVARCHAR", None, None, "STRING"),
    (" DateTimeOffset ", None, None, "TIMESTAMP"),
]


@pytest.mark.parametrize(("name", "precision", "scale", "expected"), MSSQL_CASES)
def test_mssql_type_names(name: str, precision: int | None, scale: int | None, expected: str) -> None:
    assert bigquery_type_for_mssql(name, precision, scale, max_length=-1) == expected


@pytest.mark.parametrize("name", ["cursor", "table", "vector", "decimal(12,2)", ""], ids=repr)
def test_unknown_mssql_types_are_refused_by_name(name: str) -> None:
    with pytest.raises(TypeMappingError, match=repr(name).replace("(", r"\(").replace(")", r"\)")):
        bigquery_type_for_mssql(name)


@pytest.mark.parametrize(("precision", "scale"), [(0, 0), (39, 0), (10, 11), (10, -1)])
def test_impossible_decimals_are_refused(precision: int, scale: int) -> None:
    with pytest.raises(TypeMappingError):
        bigquery_type_for_mssql("decimal", precision, scale)


# --- types reflected by SQLAlchemy --------------------------------------------------------------

SQLALCHEMY_CASES = [
    (sa.Boolean(), "BOOL"),
    (sa.SmallInteger(), "INT64"),
    (sa.BigInteger(), "INT64"),
    (sa.Numeric(12, 2), "NUMERIC"),
    (sa.Numeric(), "NUMERIC"),  # unknown precision: NUMERIC, documented
    (sa.Numeric(12, 2, asdecimal=False), "FLOAT64"),
    (sa.Float(), "FLOAT64"),
    (sa.Double(), "FLOAT64"),
    (sa.DateTime(), "DATETIME"),
    (sa.DateTime(timezone=True), "TIMESTAMP"),
    (sa.Date(), "DATE"),
    (sa.Time(), "TIME"),
    (sa.Interval(), "STRING"),
    (sa.String(10), "STRING"),
    (sa.Text(), "STRING"),
    (sa.Unicode(5), "STRING"),
    (sa.Enum("a", "b"), "STRING"),
    (sa.Uuid(), "STRING"),
    (sa.JSON(), "STRING"),
    (sa.LargeBinary(), "BYTES"),
    (sa.types.NullType(), "STRING"),
    (postgresql.NUMERIC(), "NUMERIC"),
    (postgresql.NUMERIC(40, 2), "BIGNUMERIC"),
    (postgresql.NUMERIC(20, 12), "BIGNUMERIC"),
    (postgresql.DOUBLE_PRECISION(), "FLOAT64"),
    (postgresql.REAL(), "FLOAT64"),
    (postgresql.TIMESTAMP(timezone=True), "TIMESTAMP"),
    (postgresql.TIMESTAMP(), "DATETIME"),
    (postgresql.INTERVAL(), "STRING"),
    (postgresql.UUID(), "STRING"),
    (postgresql.JSONB(), "STRING"),
    (postgresql.BYTEA(), "BYTES"),
    (postgresql.CITEXT(), "STRING"),
    (mysql.TINYINT(1), "INT64"),
    (mysql.MEDIUMINT(), "INT64"),
    (mysql.DECIMAL(65, 30), "BIGNUMERIC"),
    (mysql.DOUBLE(), "FLOAT64"),
    (mysql.DATETIME(fsp=6), "DATETIME"),
    (mysql.TIMESTAMP(), "DATETIME"),
    (mysql.LONGTEXT(), "STRING"),
    (mysql.ENUM("x"), "STRING"),
    (mysql.LONGBLOB(), "BYTES"),
    (mysql.VARBINARY(16), "BYTES"),
    (mssql.BIT(), "BOOL"),
    (mssql.TINYINT(), "INT64"),
    (mssql.MONEY(), "NUMERIC"),
    (mssql.SMALLMONEY(), "NUMERIC"),
    (mssql.REAL(), "FLOAT64"),
    (mssql.DOUBLE_PRECISION(), "FLOAT64"),
    (mssql.DATETIME2(7), "DATETIME"),
    (mssql.SMALLDATETIME(), "DATETIME"),
    (mssql.DATETIMEOFFSET(7), "TIMESTAMP"),
    (mssql.TIME(7), "TIME"),
    (mssql.NTEXT(), "STRING"),
    (mssql.XML(), "STRING"),
    (mssql.UNIQUEIDENTIFIER(), "STRING"),
    (mssql.SQL_VARIANT(), "STRING"),
    (mssql.JSON(), "STRING"),
    (mssql.IMAGE(), "BYTES"),
    (mssql.VARBINARY("max"), "BYTES"),
    (mssql.TIMESTAMP(), "BYTES"),  # SQL Server's timestamp is a rowversion, not a time
    (mssql.ROWVERSION(), "BYTES"),
    (mssql.DECIMAL(38, 0), "BIGNUMERIC"),
    (mssql.NVARCHAR(20), "STRING"),
    (mysql.YEAR(), "INT64"),
]


@pytest.mark.parametrize(("sa_type", "expected"), SQLALCHEMY_CASES, ids=lambda v: repr(v))
def test_sqlalchemy_types(sa_type: sa.types.TypeEngine, expected: str) -> None:
    assert bigquery_type_for_sqlalchemy(sa_type) == expected


@pytest.mark.parametrize(
    "sa_type",
    [sa.Time(timezone=True), postgresql.ARRAY(sa.Integer()), mysql.BIT(8), sa.PickleType()],
    ids=repr,
)
def test_unmappable_sqlalchemy_types_are_refused(sa_type: sa.types.TypeEngine) -> None:
    with pytest.raises(TypeMappingError):
        bigquery_type_for_sqlalchemy(sa_type)


@pytest.mark.parametrize(
    ("sa_type", "parameters"),
    [
        (sa.Numeric(12, 2), (12, 2, None)),
        (sa.String(40), (None, None, 40)),
        (sa.LargeBinary(16), (None, None, 16)),
        (sa.Integer(), (None, None, None)),
        (mssql.DATETIME2(7), (7, None, None)),
    ],
    ids=repr,
)
def test_type_parameters(sa_type: sa.types.TypeEngine, parameters: tuple[int | None, ...]) -> None:
    assert type_parameters(sa_type) == parameters


def test_types_reflected_from_sqlite(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'source.db'}")
    metadata = sa.MetaData()
    expected = {
        "id": (sa.Integer(), "INT64"),
        "big": (sa.BigInteger(), "INT64"),
        "flag": (sa.Boolean(), "BOOL"),
        "amount": (sa.Numeric(12, 2), "NUMERIC"),
        "wide": (sa.Numeric(38, 0), "BIGNUMERIC"),
        "ratio": (sa.Float(), "FLOAT64"),
        "single": (sa.REAL(), "FLOAT64"),
        "name": (sa.String(40), "STRING"),
        "body": (sa.Text(), "STRING"),
        "blob": (sa.LargeBinary(), "BYTES"),
        "day": (sa.Date(), "DATE"),
        "at": (sa.DateTime(), "DATETIME"),
        "clock": (sa.Time(), "TIME"),
        "ident": (sa.Uuid(), "STRING"),
        "doc": (sa.JSON(), "STRING"),
    }
    sa.Table(
        "typed",
        metadata,
        *(sa.Column(name, sa_type, primary_key=name == "id") for name, (sa_type, _) in expected.items()),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE loose (untyped, bare DECIMAL, code VARCHAR(3))")
    try:
        inspector = sa.inspect(engine)
        reflected = {c["name"]: bigquery_type_for_sqlalchemy(c["type"]) for c in inspector.get_columns("typed")}
        loose = {c["name"]: bigquery_type_for_sqlalchemy(c["type"]) for c in inspector.get_columns("loose")}
    finally:
        engine.dispose()
    assert reflected == {name: bq_type for name, (_, bq_type) in expected.items()}
    assert loose == {"untyped": "STRING", "bare": "NUMERIC", "code": "STRING"}


# --- Arrow types --------------------------------------------------------------------------------

ARROW_CASES = [
    ("INT64", pa.int64()),
    ("NUMERIC", pa.decimal128(38, 9)),
    ("BIGNUMERIC", pa.decimal256(76, 38)),
    ("FLOAT64", pa.float64()),
    ("BOOL", pa.bool_()),
    ("STRING", pa.string()),
    ("BYTES", pa.binary()),
    ("DATE", pa.date32()),
    ("DATETIME", pa.timestamp("us")),
    ("TIMESTAMP", pa.timestamp("us", tz="UTC")),
    ("TIME", pa.time64("us")),
    ("GEOGRAPHY", pa.string()),
    ("JSON", pa.string()),
]


@pytest.mark.parametrize(("bq_type", "expected"), ARROW_CASES)
def test_arrow_types(bq_type: str, expected: pa.DataType) -> None:
    assert arrow_type(bq_type) == expected


def test_every_mapped_type_has_an_arrow_type_and_a_converter() -> None:
    for bq_type in {expected for *_, expected in MSSQL_CASES} | {e for _, e in SQLALCHEMY_CASES}:
        assert arrow_type(bq_type) is not None
        assert arrow_value_converter(bq_type)(None) is None


@pytest.mark.parametrize("bq_type", ["INTERVAL", "RANGE", "STRUCT", ""])
def test_unknown_bigquery_types_are_refused(bq_type: str) -> None:
    with pytest.raises(TypeMappingError):
        arrow_type(bq_type)
    with pytest.raises(TypeMappingError):
        arrow_value_converter(bq_type)


# --- value conversion ---------------------------------------------------------------------------

SAMPLE_UUID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")

CONVERSIONS = [
    ("INT64", 7, 7),
    ("INT64", True, 1),
    ("INT64", Decimal("42"), 42),
    ("INT64", Decimal("42.000"), 42),
    ("INT64", 2**63 - 1, 2**63 - 1),
    ("NUMERIC", Decimal("12.30"), Decimal("12.30")),
    ("NUMERIC", 5, Decimal("5")),
    ("NUMERIC", 0.1, Decimal("0.1")),
    ("NUMERIC", "-3.5", Decimal("-3.5")),
    ("NUMERIC", Decimal("1.5000000000000"), Decimal("1.5")),
    ("NUMERIC", Decimal("9" * 29 + "." + "9" * 9), Decimal("9" * 29 + "." + "9" * 9)),
    ("NUMERIC", Decimal("922337203685477.5807"), Decimal("922337203685477.5807")),  # max money
    ("BIGNUMERIC", Decimal("1E-38"), Decimal("1E-38")),
    ("BIGNUMERIC", Decimal("9" * 38), Decimal("9" * 38)),
    ("BIGNUMERIC", Decimal("9" * 38 + "." + "9" * 38), Decimal("9" * 38 + "." + "9" * 38)),
    ("BIGNUMERIC", 1.25, Decimal("1.25")),
    ("FLOAT64", 1.5, 1.5),
    ("FLOAT64", 3, 3.0),
    ("BOOL", True, True),
    ("BOOL", 0, False),
    ("BOOL", 1, True),
    ("STRING", "Zürich ", "Zürich "),
    ("STRING", "", ""),
    ("STRING", SAMPLE_UUID, str(SAMPLE_UUID)),
    ("STRING", Decimal("1E+3"), "1000"),
    ("STRING", 5, "5"),
    ("BYTES", b"\x00\x01", b"\x00\x01"),
    ("BYTES", bytearray(b"\x02"), b"\x02"),
    ("BYTES", memoryview(b"\x03"), b"\x03"),
    ("DATE", dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
    ("DATE", dt.datetime(2024, 2, 29, 23, 59), dt.date(2024, 2, 29)),
    ("DATE", "2024-02-29", dt.date(2024, 2, 29)),
    ("DATETIME", dt.datetime(2024, 1, 1, 12, 0, 0, 5), dt.datetime(2024, 1, 1, 12, 0, 0, 5)),
    ("DATETIME", dt.datetime(2024, 1, 1, 12, tzinfo=PLUS_TWO), dt.datetime(2024, 1, 1, 10)),
    ("DATETIME", "2024-01-01 12:30:00", dt.datetime(2024, 1, 1, 12, 30)),
    ("DATETIME", "2024-01-01 12:30:00.25", dt.datetime(2024, 1, 1, 12, 30, 0, 250000)),
    # datetime2(7): the seventh digit is truncated, never rounded into the next year
    ("DATETIME", "2024-12-31 23:59:59.9999999", dt.datetime(2024, 12, 31, 23, 59, 59, 999999)),
    ("DATETIME", dt.datetime(1, 1, 1), dt.datetime(1, 1, 1)),
    ("DATETIME", dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ("TIMESTAMP", dt.datetime(2024, 1, 1, 12, tzinfo=PLUS_TWO), dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
    ("TIMESTAMP", dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 1, 12, tzinfo=UTC)),
    ("TIMESTAMP", "2024-01-01 12:00:00+02:00", dt.datetime(2024, 1, 1, 10, tzinfo=UTC)),
    ("TIME", dt.time(23, 59, 59, 999999), dt.time(23, 59, 59, 999999)),
    ("TIME", "08:15:00.1234567", dt.time(8, 15, 0, 123456)),
    ("GEOGRAPHY", "POINT(1 2)", "POINT(1 2)"),
    ("JSON", '{"a": 1}', '{"a": 1}'),
]


@pytest.mark.parametrize(("bq_type", "value", "expected"), CONVERSIONS, ids=repr)
def test_conversion_round_trips_through_arrow(bq_type: str, value: object, expected: object) -> None:
    converted = arrow_value_converter(bq_type)(value)
    assert converted == expected
    array = pa.array([converted, None], type=arrow_type(bq_type))
    stored = array.to_pylist()
    assert stored == [expected, None]
    # What BigQuery gives back canonicalises like what was hashed.
    assert canonical_text(stored[0]) == canonical_text(converted)


def test_numeric_keeps_a_decimal_exact() -> None:
    stored = pa.array([arrow_value_converter("NUMERIC")(Decimal("12.30"))], type=arrow_type("NUMERIC"))
    assert stored.to_pylist() == [Decimal("12.300000000")]
    assert canonical_text(stored[0].as_py()) == "12.3"


REFUSALS = [
    ("INT64", 1.0),
    ("INT64", "1"),
    ("INT64", Decimal("1.5")),
    ("INT64", 2**63),
    ("NUMERIC", Decimal("1E-10")),
    ("NUMERIC", Decimal("1" * 30)),
    ("NUMERIC", Decimal("NaN")),
    ("NUMERIC", float("inf")),
    ("NUMERIC", "abc"),
    ("NUMERIC", True),
    ("NUMERIC", b"1"),
    ("BIGNUMERIC", Decimal("1E-39")),
    ("BIGNUMERIC", Decimal("1" * 39)),
    ("FLOAT64", "1.5"),
    ("FLOAT64", 2**53 + 1),
    ("FLOAT64", True),
    ("BOOL", 2),
    ("BOOL", "true"),
    ("STRING", "a\udc80"),
    ("STRING", object()),
    ("STRING", dt.timedelta(seconds=1)),
    ("BYTES", "00ff"),
    ("DATE", "29/02/2024"),
    ("DATE", 20240229),
    ("DATETIME", dt.date(2024, 1, 1)),
    ("DATETIME", "yesterday"),
    ("DATETIME", dt.datetime(1, 1, 1, tzinfo=PLUS_TWO)),
    ("TIMESTAMP", 1700000000),
    ("TIME", dt.time(1, 2, tzinfo=UTC)),
    ("TIME", dt.timedelta(hours=1)),
    ("GEOGRAPHY", b"\x00"),
    ("JSON", {"a": 1}),
]


@pytest.mark.parametrize(("bq_type", "value"), REFUSALS, ids=repr)
def test_unconvertible_values_raise_value_error_naming_the_type(bq_type: str, value: object) -> None:
    with pytest.raises(ValueError, match=type(value).__name__):
        arrow_value_converter(bq_type)(value)


def test_converter_type_names_are_case_insensitive() -> None:
    assert arrow_value_converter("numeric")("1.5") == Decimal("1.5")
    assert arrow_type("timestamp") == pa.timestamp("us", tz="UTC")
