"""BigQuery literals for script variables.

BigQuery scripts accept query parameters, but the local emulator binds none inside scripts, so
the load script declares its values as variables with literal defaults rendered here. Quotes and
backslashes are escaped and control characters refused, so no value can end the literal early.
"""
from __future__ import annotations

import datetime as dt


def string(value: str) -> str:
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f"control character in string literal {value!r}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def integer(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an int, got {type(value).__name__}")
    return str(value)


def timestamp(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamp literal needs an aware datetime")
    return f"TIMESTAMP {string(value.astimezone(dt.UTC).isoformat())}"


def declare(name: str, bq_type: str, literal: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"invalid script variable name {name!r}")
    return f"DECLARE {name} {bq_type} DEFAULT {literal};"
