"""The value ranges each kind of source enforces on its own column types, in one place.

The validator's ``range:<col>`` checks and the generated row models (`shared.models`) both take their
bounds from here, so a value one accepts the other cannot fail. A dialect is SQLAlchemy's name of
the source (``manifest.source_dialect``); SQLite enforces no declared type, so it has no ranges.
"""
from __future__ import annotations

import datetime as dt

_INT16, _INT32 = (-(2**15), 2**15 - 1), (-(2**31), 2**31 - 1)
_MYSQL_INTS = {"tinyint": (-128, 127), "smallint": _INT16, "mediumint": (-(2**23), 2**23 - 1), "int": _INT32,
               "integer": _INT32}
INT_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "mssql": {"tinyint": (0, 255), "smallint": _INT16, "int": _INT32},
    "mysql": _MYSQL_INTS,
    "mariadb": _MYSQL_INTS,
    "postgresql": {"smallint": _INT16, "integer": _INT32},
}
DATE_RANGES: dict[str, dict[str, tuple[dt.date, dt.date]]] = {
    "mssql": {"smalldatetime": (dt.date(1900, 1, 1), dt.date(2079, 6, 6)),
              "datetime": (dt.date(1753, 1, 1), dt.date(9999, 12, 31))},
}


def first_word(source_type: str) -> str:
    """The type's name without parameters or modifiers: ``int unsigned`` -> ``int``."""
    return source_type.strip().lower().split("(")[0].split()[0] if source_type.strip() else ""


def integer_range(source_type: str, dialect: str) -> tuple[int, int] | None:
    """The integers a column of this source type holds (an unsigned MySQL type: from 0), or None
    when the source enforces nothing narrower than BigQuery's INT64."""
    bounds = INT_RANGES.get(dialect, {}).get(first_word(source_type))
    if bounds is None:
        return None
    low, high = bounds
    if "unsigned" in source_type.lower() and low < 0:
        return 0, 2 * high + 1
    return low, high


def date_range(source_type: str, dialect: str) -> tuple[dt.date, dt.date] | None:
    """The dates a column of this source type holds, or None when only BigQuery's own range applies."""
    return DATE_RANGES.get(dialect, {}).get(first_word(source_type))
