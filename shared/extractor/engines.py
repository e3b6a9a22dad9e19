"""The native engines an extraction runs on, imported once a process when its source is connected.

Their modules are imported where they are first used (so the loader, which only names the raw-hash
column, never loads DuckDB). DuckDB's first Arrow scan also imports pyarrow.dataset. Together that
put about 0.15 s of imports into the first table's extraction, a fifth of a 100k-row PostgreSQL
table's time. Importing them with the source connection pays that once a process, at a Cloud
Function instance's start or the agent's, before any table is read.
"""
from __future__ import annotations

import importlib

_FOR_EVERY_SOURCE = (
    "duckdb", "datafusion", "datafusion.functions", "pyarrow.compute", "pyarrow.dataset", "pyarrow.parquet",
)
_ARROW_READERS = {"sqlite": "adbc_driver_sqlite.dbapi", "postgresql": "adbc_driver_postgresql.dbapi"}


def preload(dialect: str) -> None:
    """Imports what extracting from a source of this SQLAlchemy dialect uses; a missing optional
    engine is left to the code that would use it (each falls back on its own)."""
    modules = _FOR_EVERY_SOURCE + ((_ARROW_READERS[dialect],) if dialect in _ARROW_READERS else ())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
