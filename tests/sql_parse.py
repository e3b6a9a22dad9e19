"""Strict BigQuery parsing of the SQL the code generates, so what runs on the emulator is also GoogleSQL."""
from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel


def strict(sql: str, dialect: str = "bigquery") -> exp.Expression:
    statement = sqlglot.parse_one(sql, read=dialect, error_level=ErrorLevel.RAISE)
    assert not isinstance(statement, exp.Command), sql[:200]
    return statement


def script_statements(script: str, known: tuple[type[exp.Expression], ...] | None = None) -> list[exp.Expression]:
    """Every statement of a script, IF conditions as SELECTs, each parsed strictly; none an unparsed
    command, and (given `known`) each of those statement kinds."""
    plain = []
    for line in script.splitlines():
        condition = re.fullmatch(r"IF (.+) THEN", line.strip())
        if condition:
            plain.append(f"SELECT {condition.group(1)};")
        elif line.strip() not in ("ELSE", "END IF;"):
            plain.append(line)
    statements = [s for s in sqlglot.parse("\n".join(plain), read="bigquery", error_level=ErrorLevel.RAISE) if s]
    assert all(not isinstance(s, exp.Command) for s in statements), [s.sql()[:80] for s in statements]
    if known is not None:
        unknown = [s.sql("bigquery")[:80] for s in statements if not isinstance(s, known)]
        assert not unknown, unknown
    return statements
