"""The source side of `compare-keys`: every row hashed as the extractor hashes it, segment
fingerprints kept in memory, keys and hashes spilled to a temporary SQLite file (bounded memory)."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared import segments
from shared.extractor.source import SourceTable, stream_rows
from shared.hashing import RowHasher, canonical_text
from shared.types import arrow_value_converter


class CompareProgress:
    """Callbacks for progress display; the default shows nothing."""

    def started(self, table: str, rows: int | None) -> None: ...
    def rows(self, count: int) -> None: ...
    def phase(self, text: str) -> None: ...


class SourceKeys:
    """Segment fingerprints in memory, every row's key and hashes in a temporary SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.index = segments.SegmentIndex()
        self._db = sqlite3.connect(directory / "source-keys.sqlite")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE rows (kh TEXT NOT NULL, rh TEXT NOT NULL, key TEXT NOT NULL)")

    def add(self, batch: list[tuple[str, str, str]]) -> None:
        for key_hash, row_hash, _ in batch:
            self.index.add(key_hash, row_hash)
        self._db.executemany("INSERT INTO rows VALUES (?, ?, ?)", batch)

    def finish(self) -> None:
        self._db.execute("CREATE INDEX rows_kh ON rows (kh)")
        self._db.commit()

    def rows_under(self, prefixes: list[str]) -> Iterator[tuple[str, str, tuple[str | None, ...]]]:
        for prefix in prefixes:
            upper = prefix + "g"  # every hex digit sorts below "g"
            for kh, rh, key in self._db.execute("SELECT kh, rh, key FROM rows WHERE kh >= ? AND kh < ?", (prefix, upper)):
                yield kh, rh, tuple(json.loads(key))

    def close(self) -> None:
        self._db.close()


def count_rows(engine: Engine, source: SourceTable) -> int | None:
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(source.table)).scalar_one())
    except Exception:  # a progress total is a nicety; never fail a comparison over it
        return None


def stream_source(engine: Engine, source: SourceTable, keys: SourceKeys, chunk_rows: int,
                  progress: CompareProgress) -> int:
    """Hashes every source row as the extractor does; returns the rows that could not be converted
    (the extractor quarantines those, so they are not expected in BigQuery)."""
    schema = source.schema
    converters = [arrow_value_converter(c.bq_type) for c in schema.columns]
    hasher = RowHasher(schema.key_hash_positions)
    positions = schema.key_positions
    unconvertible = 0
    for chunk in stream_rows(engine, source, chunk_rows):
        batch = []
        for row in chunk:
            try:
                values = [convert(v) for convert, v in zip(converters, row, strict=True)]
            except (ValueError, TypeError, ArithmeticError):
                unconvertible += 1
                continue
            key_hash, row_hash = hasher(values)
            key = json.dumps([canonical_text(values[p]) for p in positions], ensure_ascii=False)
            batch.append((key_hash, row_hash, key))
        keys.add(batch)
        progress.rows(len(chunk))
    keys.finish()
    return unconvertible
