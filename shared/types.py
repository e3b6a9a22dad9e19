"""Source column types to BigQuery types, BigQuery types to Arrow, and driver values to Arrow.

One table per direction, so a column's landing type is decided in one place for every source
dialect, and the Parquet files the extractor writes load into exactly those BigQuery types.

SQL Server rules worth knowing:

* ``decimal``/``numeric(p, s)`` land in NUMERIC (29 integer and 9 fractional digits) when they fit,
  otherwise in BIGNUMERIC (38 and 38), which holds every SQL Server decimal. Unspecified precision
  and scale are SQL Server's defaults, (18, 0).
* ``datetime2(7)``, ``time(7)`` and ``datetimeoffset(7)`` count in 100 ns; Python, Arrow and
  BigQuery count in microseconds. The seventh digit is truncated (towards the past), never rounded:
  rounding could carry a value into the next second, day or year. Text values are parsed by the
  same rule. Two source values that differ only in that digit therefore land, and hash, equal.
* ``datetimeoffset`` lands in TIMESTAMP: the instant is kept, the offset is dropped.
* ``hierarchyid`` and ``geometry`` land as STRING, ``geography`` as GEOGRAPHY, all as text: the
  extractor selects them as text (``ToString()``, EWKT from ``AsTextZM()``, ``STAsText()``; see
  ``shared.mssql.select``), since drivers otherwise return their binary CLR serialisation. ``sql_variant`` lands as STRING (the value's canonical text).
"""
from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable

import pyarrow as pa
from sqlalchemy import types as sa
from sqlalchemy.dialects.mysql import YEAR as MYSQL_YEAR
from sqlalchemy.dialects.postgresql import INTERVAL as POSTGRESQL_INTERVAL
from sqlalchemy.sql.sqltypes import _Binary

from shared.hashing import HashingError, canonical_text

_NUMERIC_MAX_SCALE = 9
_NUMERIC_MAX_INTEGER_DIGITS = 29
_BIGNUMERIC_MAX_SCALE = 38
_BIGNUMERIC_MAX_INTEGER_DIGITS = 38
_MSSQL_MAX_PRECISION = 38
_MSSQL_DEFAULT_PRECISION = 18
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UTC = datetime.timezone.utc
# Room for 38 integer and 38 fractional digits, so checking a BIGNUMERIC never rounds.
_EXACT = decimal.Context(prec=80)
# The largest STRING/BYTES value (UTF-8 bytes) a row may carry; larger ones are quarantined.
# BigQuery documents no limit per value, only 100 MB per row in a load job; 10 MiB is far above
# any real value of the source and keeps one hostile cell from swelling a chunk or a loaded row.
MAX_CELL_BYTES = 10 * 1024 * 1024


class TypeMappingError(ValueError):
    """A source type with no BigQuery landing type; the table cannot be replicated as is."""


_MSSQL_TYPES = {
    "bit": "BOOL",
    **dict.fromkeys(("tinyint", "smallint", "int", "bigint"), "INT64"),
    **dict.fromkeys(("money", "smallmoney"), "NUMERIC"),
    **dict.fromkeys(("float", "real"), "FLOAT64"),
    "date": "DATE",
    "time": "TIME",
    **dict.fromkeys(("datetime", "datetime2", "smalldatetime"), "DATETIME"),
    "datetimeoffset": "TIMESTAMP",
    **dict.fromkeys(
        ("char", "varchar", "nchar", "nvarchar", "text", "ntext", "xml", "sysname"), "STRING"
    ),
    **dict.fromkeys(("binary", "varbinary", "image", "rowversion", "timestamp"), "BYTES"),
    **dict.fromkeys(("uniqueidentifier", "sql_variant", "hierarchyid", "geometry"), "STRING"),
    "geography": "GEOGRAPHY",
}


def _decimal_bigquery_type(precision: int | None, scale: int | None) -> str:
    """NUMERIC when the digits fit it, else BIGNUMERIC; None precision means unknown (NUMERIC)."""
    scale = scale or 0
    if scale > _NUMERIC_MAX_SCALE:
        return "BIGNUMERIC"
    if precision is not None and precision - scale > _NUMERIC_MAX_INTEGER_DIGITS:
        return "BIGNUMERIC"
    return "NUMERIC"


def bigquery_type_for_mssql(
    data_type: str,
    precision: int | None = None,
    scale: int | None = None,
    max_length: int | None = None,
) -> str:
    """The BigQuery type for a SQL Server ``INFORMATION_SCHEMA.COLUMNS.DATA_TYPE`` name.

    `max_length` is accepted so a catalog row can be passed whole; BigQuery STRING and BYTES have
    no length, so no mapping depends on it.
    """
    name = data_type.strip().lower()
    if name in ("decimal", "numeric"):
        precision = _MSSQL_DEFAULT_PRECISION if precision is None else precision
        scale = 0 if scale is None else scale
        if not (1 <= precision <= _MSSQL_MAX_PRECISION and 0 <= scale <= precision):
            raise TypeMappingError(f"invalid SQL Server {name}({precision}, {scale})")
        return _decimal_bigquery_type(precision, scale)
    try:
        return _MSSQL_TYPES[name]
    except KeyError:
        raise TypeMappingError(f"no BigQuery type for SQL Server type {data_type!r}") from None


def type_parameters(sa_type: sa.TypeEngine) -> tuple[int | None, int | None, int | None]:
    """(precision, scale, length) of a reflected type, None where the type has no such part."""
    return (
        getattr(sa_type, "precision", None),
        getattr(sa_type, "scale", None),
        getattr(sa_type, "length", None),
    )


def _is_mssql_type(sa_type: sa.TypeEngine) -> bool:
    return type(sa_type).__module__.startswith("sqlalchemy.dialects.mssql.")


def bigquery_type_for_sqlalchemy(sa_type: sa.TypeEngine) -> str:
    """The BigQuery type for a type reflected by SQLAlchemy from any supported dialect.

    SQL Server's own classes go through `bigquery_type_for_mssql` by their visit name (BIT,
    DATETIMEOFFSET, MONEY, ...); the few whose visit name is not a SQL Server type name
    (DOUBLE_PRECISION, JSON) fall through to the generic rules. A Numeric of unknown precision (a
    bare PostgreSQL ``numeric``) lands in NUMERIC: values too large or too precise for it are
    refused by the converter and quarantined loudly rather than widening every such column.
    A time with a time zone is refused: it names no instant and BigQuery TIME holds no offset.
    """
    declared = getattr(sa_type, "bigquery_type", None)  # a type the extractor reads as (read_types)
    if isinstance(declared, str):
        return declared
    if _is_mssql_type(sa_type):
        precision, scale, length = type_parameters(sa_type)
        try:
            return bigquery_type_for_mssql(sa_type.__visit_name__, precision, scale, length)
        except TypeMappingError:
            pass
    return _generic_bigquery_type(sa_type)


def _generic_bigquery_type(sa_type: sa.TypeEngine) -> str:
    if isinstance(sa_type, sa.Boolean):
        return "BOOL"
    if isinstance(sa_type, (sa.Integer, MYSQL_YEAR)):  # MySQL's YEAR reads as the year's number
        return "INT64"
    if isinstance(sa_type, sa.Float):
        return "FLOAT64"
    if isinstance(sa_type, sa.Numeric):
        if not sa_type.asdecimal:
            return "FLOAT64"
        return _decimal_bigquery_type(sa_type.precision, sa_type.scale)
    if isinstance(sa_type, sa.DateTime):
        return "TIMESTAMP" if sa_type.timezone else "DATETIME"
    if isinstance(sa_type, sa.Date):
        return "DATE"
    if isinstance(sa_type, sa.Time):
        if sa_type.timezone:
            raise TypeMappingError(f"no BigQuery type for a time with a time zone ({sa_type!r})")
        return "TIME"
    if isinstance(sa_type, (sa.Interval, POSTGRESQL_INTERVAL)):
        return "STRING"
    if isinstance(sa_type, (sa.String, sa.Uuid, sa.JSON, sa.NullType)):
        return "STRING"
    if isinstance(sa_type, _Binary):  # the one base of every binary type (MySQL's BLOBs too)
        return "BYTES"
    raise TypeMappingError(f"no BigQuery type for {type(sa_type).__module__}.{sa_type!r}")


_ARROW_TYPES = {
    "INT64": pa.int64(),
    "NUMERIC": pa.decimal128(38, 9),
    "BIGNUMERIC": pa.decimal256(76, 38),
    "FLOAT64": pa.float64(),
    "BOOL": pa.bool_(),
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "DATE": pa.date32(),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "TIME": pa.time64("us"),
    "GEOGRAPHY": pa.string(),
    "JSON": pa.string(),
}


def arrow_type(bq_type: str) -> pa.DataType:
    """The Arrow type a BigQuery column is written as in Parquet, so the load needs no casts."""
    try:
        return _ARROW_TYPES[bq_type.upper()]
    except KeyError:
        raise TypeMappingError(f"no Arrow type for BigQuery type {bq_type!r}") from None


def _refuse(value: object, bq_type: str, why: str = "") -> ValueError:
    detail = f": {why}" if why else ""
    return ValueError(f"cannot convert a {type(value).__name__} to {bq_type}{detail}")


def _to_int64(value: object) -> int:
    if isinstance(value, decimal.Decimal) and value.is_finite() and value == value.to_integral():
        value = int(value)
    if not isinstance(value, int):
        raise _refuse(value, "INT64")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _refuse(value, "INT64", "out of range")
    return int(value)  # a plain int also for bools and IntEnums


def _to_float64(value: object) -> float:
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and float(value) == value:
        return float(value)
    raise _refuse(value, "FLOAT64", "only floats and exactly representable ints")


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _refuse(value, "BOOL", "only bools, 0 and 1")


def _fits(number: decimal.Decimal, max_integer_digits: int, quantum: decimal.Decimal) -> bool:
    """Whether a finite Decimal has at most `max_integer_digits` integer digits and no nonzero
    digit below `quantum` (so 12.30 fits two fractional digits)."""
    if number.is_zero():
        return True
    if number.adjusted() >= max_integer_digits:
        return False
    return number.quantize(quantum, decimal.ROUND_DOWN, _EXACT) == number


def _to_decimal(value: object, bq_type: str) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (decimal.Decimal, int, float, str)):
        raise _refuse(value, bq_type)
    try:
        return decimal.Decimal(str(value) if isinstance(value, float) else value)
    except decimal.InvalidOperation:
        raise _refuse(value, bq_type, "not a number") from None


def _decimal_converter(
    bq_type: str, max_integer_digits: int, max_scale: int
) -> Callable[[object], decimal.Decimal]:
    """Exact Decimals that fit `bq_type`; a float goes through str(), never its binary expansion."""
    quantum = decimal.Decimal(1).scaleb(-max_scale)

    def convert(value: object) -> decimal.Decimal:
        number = value if type(value) is decimal.Decimal else _to_decimal(value, bq_type)
        if not number.is_finite() or not _fits(number, max_integer_digits, quantum):
            raise _refuse(value, bq_type, f"{value!r} does not fit")
        return number

    return convert


def _cell_sized(text: str, bq_type: str) -> str:
    # A code point is at most 4 UTF-8 bytes: only long texts need encoding to be measured.
    if len(text) > MAX_CELL_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_CELL_BYTES:
        raise ValueError(f"cannot convert a str to {bq_type}: over {MAX_CELL_BYTES} bytes (the per-cell limit)")
    return text


def _utf8_text(value: str, bq_type: str) -> str:
    """An exact str that UTF-8 can encode (Parquet and hashing both need that)."""
    text = str.__str__(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(value, bq_type, "unpaired surrogate") from None
    return _cell_sized(text, bq_type)


def _to_string(value: object) -> str | None:
    """Text verbatim; anything else as its canonical hashing text (UUIDs lowercase, Decimals plain,
    bytes hex), so the stored string hashes like the source value."""
    if isinstance(value, str):
        return _utf8_text(value, "STRING")
    try:
        text = canonical_text(value)
    except HashingError as exc:
        raise _refuse(value, "STRING", str(exc)) from None
    return None if text is None else _cell_sized(text, "STRING")


def _to_text_only(bq_type: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if not isinstance(value, str):
            raise _refuse(value, bq_type, "only text")
        return _utf8_text(value, bq_type)

    return convert


def _to_bytes(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise _refuse(value, "BYTES")
    data = bytes(value)
    if len(data) > MAX_CELL_BYTES:
        raise _refuse(value, "BYTES", f"over {MAX_CELL_BYTES} bytes (the per-cell limit)")
    return data


def _parsed(value: object, parse: Callable[[str], object], bq_type: str) -> object:
    """ISO text parsed; fromisoformat truncates fractions beyond microseconds (datetime2(7))."""
    if not isinstance(value, str):
        return value
    try:
        return parse(value)
    except ValueError:
        raise _refuse(value, bq_type, f"unparseable {value!r}") from None


def _to_date(value: object) -> datetime.date:
    value = _parsed(value, datetime.date.fromisoformat, "DATE")
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    raise _refuse(value, "DATE")


def _as_utc(value: datetime.datetime, bq_type: str) -> datetime.datetime:
    try:
        return value.astimezone(_UTC)
    except OverflowError:
        raise _refuse(value, bq_type, "outside the UTC range") from None


def _to_datetime(value: object) -> datetime.datetime:
    """Naive wall-clock datetimes as they are; an aware one as its UTC wall clock."""
    value = _parsed(value, datetime.datetime.fromisoformat, "DATETIME")
    if not isinstance(value, datetime.datetime):
        raise _refuse(value, "DATETIME")
    if value.tzinfo is None:
        return value
    if value.utcoffset() is None:
        return value.replace(tzinfo=None)
    return _as_utc(value, "DATETIME").replace(tzinfo=None)


def _to_timestamp(value: object) -> datetime.datetime:
    """An instant in UTC; a naive datetime is taken to be UTC already."""
    value = _parsed(value, datetime.datetime.fromisoformat, "TIMESTAMP")
    if not isinstance(value, datetime.datetime):
        raise _refuse(value, "TIMESTAMP")
    if value.utcoffset() is None:
        return value.replace(tzinfo=_UTC)
    return _as_utc(value, "TIMESTAMP")


def _to_time(value: object) -> datetime.time:
    value = _parsed(value, datetime.time.fromisoformat, "TIME")
    if not isinstance(value, datetime.time):
        raise _refuse(value, "TIME")
    if value.tzinfo is not None:
        raise _refuse(value, "TIME", "a time with a time zone")
    return value


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "INT64": _to_int64,
    "NUMERIC": _decimal_converter("NUMERIC", _NUMERIC_MAX_INTEGER_DIGITS, _NUMERIC_MAX_SCALE),
    "BIGNUMERIC": _decimal_converter(
        "BIGNUMERIC", _BIGNUMERIC_MAX_INTEGER_DIGITS, _BIGNUMERIC_MAX_SCALE
    ),
    "FLOAT64": _to_float64,
    "BOOL": _to_bool,
    "STRING": _to_string,
    "BYTES": _to_bytes,
    "DATE": _to_date,
    "DATETIME": _to_datetime,
    "TIMESTAMP": _to_timestamp,
    "TIME": _to_time,
    "GEOGRAPHY": _to_text_only("GEOGRAPHY"),
    "JSON": _to_text_only("JSON"),
}


def arrow_value_converter(bq_type: str) -> Callable[[object], object]:
    """A function turning one driver value into a value `pa.array(..., arrow_type(bq_type))`
    takes. It raises ValueError, naming the value's type, for a value it cannot convert exactly,
    so the extractor can quarantine that row instead of failing the whole batch in Arrow."""
    try:
        convert = _CONVERTERS[bq_type.upper()]
    except KeyError:
        raise TypeMappingError(f"no converter for BigQuery type {bq_type!r}") from None

    def convert_or_null(value: object) -> object:
        return None if value is None else convert(value)

    return convert_or_null
