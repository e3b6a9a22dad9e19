"""The type names a SQLite table may be declared with beyond those SQLAlchemy knows.

SQLite keeps whatever type name a table was created with. SQLAlchemy maps the common ones and gives
every other name SQLite's affinity, so a copy of a SQL Server table (UNIQUEIDENTIFIER, DATETIME2,
BIT, VARBINARY, MONEY, XML) reflected as NUMERIC, and every row holding text there was quarantined.
These names read as what SQL Server means by them, where SQLite stores that value as it is given;
a DATETIMEOFFSET stays the text it was written as (SQLite has no instant type to parse it into), and
a SQL_VARIANT, holding values of any kind, lands as their text as a column declared without a type does.
SQLAlchemy also takes a reflected TIME(7) or DATETIME(3) for a time zone flag; the digits are
dropped instead (precision beyond microseconds is truncated on the way in either way)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite


def _without_digits(base: type[sa.types.TypeEngine], name: str, **fixed: object) -> type[sa.types.TypeEngine]:
    """`base` whose reflected digits (TIME(7), MONEY(19,4), VARBINARY(MAX)) are ignored, with `fixed`
    arguments of its own; keyword arguments (SQLAlchemy's copies of a type) pass through."""
    def __init__(self: sa.types.TypeEngine, *_digits: int, **kwargs: object) -> None:
        base.__init__(self, **{**fixed, **kwargs})
    return type(name, (base,), {"__init__": __init__, "cache_ok": True})


_Datetime = _without_digits(sqlite.DATETIME, "SqliteDatetime")
_Time = _without_digits(sqlite.TIME, "SqliteTime")
_Timestamp = _without_digits(sqlite.TIMESTAMP, "SqliteTimestamp")
_Money = _without_digits(sa.Numeric, "SqliteMoney", precision=19, scale=4)
_SmallMoney = _without_digits(sa.Numeric, "SqliteSmallMoney", precision=10, scale=4)
_Binary = _without_digits(sa.LargeBinary, "SqliteBinary")
_Text = _without_digits(sa.Text, "SqliteText")


TYPE_NAMES: dict[str, type[sa.types.TypeEngine]] = {
    "DATETIME": _Datetime, "DATETIME2": _Datetime, "SMALLDATETIME": _Datetime, "TIME": _Time,
    "TIMESTAMP": _Timestamp, "DATETIMEOFFSET": _Text,
    "UNIQUEIDENTIFIER": _Text, "UUID": _Text, "XML": _Text, "HIERARCHYID": _Text, "SQL_VARIANT": sa.types.NullType,
    "GEOGRAPHY": _Text, "GEOMETRY": _Text, "SYSNAME": _Text,
    "BIT": sa.Boolean, "MONEY": _Money, "SMALLMONEY": _SmallMoney,
    "VARBINARY": _Binary, "BINARY": _Binary, "IMAGE": _Binary, "ROWVERSION": _Binary,
}


def declare_type_names(dialect: sa.Dialect) -> None:
    """Lets `dialect` (a SQLite dialect, for one engine) reflect `TYPE_NAMES` as above."""
    dialect.ischema_names = {**dialect.ischema_names, **TYPE_NAMES}  # type: ignore[attr-defined]
