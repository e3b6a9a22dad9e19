"""The BigQuery table's columns as they are now, against the columns a snapshot says it has.

Read once per validation: `schema_drift` reports the difference, and a per-column check whose column
is gone or retyped is skipped with the reason instead of sending BigQuery a query it refuses.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared import bigquery as bq
from shared.schema import HASH_COLUMNS, Column

# Lossless coercions BigQuery applies to a column: checks written for the old type still hold.
WIDENINGS = frozenset({("INT64", "NUMERIC"), ("INT64", "BIGNUMERIC"), ("NUMERIC", "BIGNUMERIC")})
_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "DECIMAL": "NUMERIC", "BIGDECIMAL": "BIGNUMERIC"}


def standard_type(name: str) -> str:
    """A BigQuery type in its standard SQL spelling: ``INTEGER`` -> ``INT64``."""
    return _ALIASES.get(name.upper(), name.upper())


def _compatible(wanted: str, have: str) -> bool:
    return have == wanted or (wanted, have) in WIDENINGS


@dataclass(frozen=True)
class Drift:
    """Columns the snapshot has and the table lacks, holds in another type, or has beyond it."""

    missing: list[str]
    retyped: list[str]  # 'name WANTED->HAVE'
    extra: list[str]


@dataclass(frozen=True)
class LiveSchema:
    """Each column of the BigQuery table, by lower-case name, with its standard type."""

    types: dict[str, str]

    def why_unreadable(self, column: Column) -> str | None:
        """Why a check of `column` cannot run against the table as it is now; None when it can."""
        have = self.types.get(column.bq_name.lower())
        if have is None:
            return f"column {column.bq_name} missing in BigQuery"
        wanted = standard_type(column.bq_type)
        if not _compatible(wanted, have):
            return f"column {column.bq_name} is {have} in BigQuery, not {wanted}"
        return None

    def drift(self, columns: list[Column]) -> Drift:
        wanted = {c.bq_name.lower(): standard_type(c.bq_type) for c in columns}
        wanted |= {name: "STRING" for name in HASH_COLUMNS}
        return Drift(
            missing=sorted(name for name in wanted if name not in self.types),
            retyped=sorted(f"{n} {wanted[n]}->{self.types[n]}" for n in wanted
                           if n in self.types and not _compatible(wanted[n], self.types[n])),
            extra=sorted(name for name in self.types if name not in wanted),
        )


def read_live_schema(table_id: str) -> LiveSchema | None:
    """The table's columns now, or None when the table does not exist."""
    table = bq.get_table(table_id)
    if table is None:
        return None
    return LiveSchema({f.name.lower(): standard_type(f.field_type) for f in table.schema})
