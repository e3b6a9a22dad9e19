"""The types source columns are read with, where the type SQLAlchemy reflects would change a value
or leave the column without a BigQuery type (and so fail its table)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
import sqlalchemy.dialects.mysql
import sqlalchemy.dialects.postgresql

from shared.types import TypeMappingError, bigquery_type_for_sqlalchemy

_DAY = dt.timedelta(days=1)


class MysqlTimeOfDay(sa.dialects.mysql.TIME):
    """MySQL's TIME is a duration (-838:59:59 to 838:59:59) that SQLAlchemy folds into a time of
    day by dropping its days. A value within a day becomes that time; any other stays the timedelta
    it is, which the TIME converter refuses, so its row is quarantined instead of changed."""

    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[object], object]:
        def process(value: object) -> object:
            if isinstance(value, dt.timedelta) and dt.timedelta(0) <= value < _DAY:
                return (dt.datetime.min + value).time()
            return value
        return process


class MysqlUtcTimestamp(sa.dialects.mysql.TIMESTAMP):
    """MySQL's TIMESTAMP is an instant the server shows in the session's time zone, so one server
    in Europe/Berlin would give wall-clock times (twice the same one in the autumn's repeated hour).
    Every connection sets the session to UTC (`source.connect`): the naive values read are UTC
    instants and land in TIMESTAMP."""

    cache_ok = True

    def __init__(self, fsp: int | None = None) -> None:
        super().__init__(timezone=True, fsp=fsp)


def _bits(value: object) -> object:
    return int.from_bytes(value, "big") if isinstance(value, bytes) else value


class MysqlBits(sa.BigInteger):
    """MySQL's BIT(n), which the driver returns as n bits of bytes, as their number (INT64)."""

    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[object], object]:
        return _bits


class MysqlFlag(sa.Boolean):
    """MySQL's BIT(1), the usual flag column, as BOOL."""

    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Callable[[object], object]:
        def process(value: object) -> object:
            number = _bits(value)
            return bool(number) if isinstance(number, int) else number
        return process


class PgText(sa.Text):
    """A PostgreSQL type with no BigQuery counterpart (arrays, inet, cidr, macaddr, bit strings,
    ranges, tsvector, ...) selected as PostgreSQL's own text of it: `{1,2,NULL}`, `10.0.0.1/24`,
    `[1,5)`, in STRING. Every select of the column casts it, in every reader."""

    cache_ok = True

    def column_expression(self, column: sa.ColumnElement) -> sa.ColumnElement:  # type: ignore[override]
        return sa.cast(column, sa.Text())


class PgMoney(sa.types.TypeDecorator):
    """PostgreSQL's money, selected as numeric: its text ('$1,234.56') follows the server's locale.
    A decorator, because the dialect swaps a Numeric subclass for its own numeric type."""

    impl = sa.Numeric(19, 2)
    cache_ok = True
    bigquery_type = "NUMERIC"

    def column_expression(self, column: sa.ColumnElement) -> sa.ColumnElement:  # type: ignore[override]
        return sa.cast(column, sa.Numeric(19, 2))


class MysqlUnsignedBigint(sa.types.TypeDecorator):
    """MySQL's BIGINT UNSIGNED reaches 2**64-1, past INT64: it lands in NUMERIC (20 digits fit), so
    a value above 2**63-1 is kept instead of quarantined."""

    impl = sa.dialects.mysql.BIGINT(unsigned=True)
    cache_ok = True
    bigquery_type = "NUMERIC"


def read_as(sa_type: sa.types.TypeEngine, dialect: str) -> sa.types.TypeEngine:
    """The type a column's values are read with, where SQLAlchemy's reflected one would change them
    or has no BigQuery type."""
    if isinstance(sa_type, sa.Float):
        # MySQL's DOUBLE reflects with asdecimal=True; FLOAT64 values must arrive as floats.
        sa_type.asdecimal = False
    if isinstance(sa_type, sa.dialects.mysql.TIME):
        return MysqlTimeOfDay(fsp=sa_type.fsp)
    if isinstance(sa_type, sa.dialects.mysql.TIMESTAMP):
        return MysqlUtcTimestamp(fsp=sa_type.fsp)
    if isinstance(sa_type, sa.dialects.mysql.SET):
        return sa.String()  # the driver's text 'a,b'; SQLAlchemy's SET makes a Python set of it
    if isinstance(sa_type, sa.dialects.mysql.BIGINT) and sa_type.unsigned:
        return MysqlUnsignedBigint()
    if isinstance(sa_type, sa.dialects.mysql.BIT):
        return MysqlFlag() if sa_type.length in (None, 1) else MysqlBits()
    if dialect == "postgresql":
        return _postgresql(sa_type)
    if isinstance(sa_type, sa.JSON):
        return sa.Text()  # the stored text, as it is: SQLAlchemy's JSON type parses it into objects
    return sa_type


def _postgresql(sa_type: sa.types.TypeEngine) -> sa.types.TypeEngine:
    if isinstance(sa_type, sa.dialects.postgresql.MONEY):
        return PgMoney()
    if isinstance(sa_type, sa.dialects.postgresql.OID):
        return sa.BigInteger()
    if isinstance(sa_type, (sa.Time, sa.dialects.postgresql.TIME)) and sa_type.timezone:
        return sa_type  # a time with an offset names no instant: refused, not turned into text
    try:
        bigquery_type_for_sqlalchemy(sa_type)
    except TypeMappingError:
        return PgText()
    return sa_type
