"""The differing keys of one comparison, kept in a SQLite file of their own instead of in memory.

The rows of the differing segments from both sides go in as they are read; the differences come out
of one SQL statement (a full outer join by key hash), so memory stays bounded by SQLite's page cache
however many keys differ: a truncated 10M-row table differs in every one of them. Read back in
display order or as key hashes; the file goes with `close()`.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MISSING, EXTRA, CHANGED, DUPLICATE, STALE_HASH = "missing", "extra", "changed", "duplicate", "stale-hash"
KIND_ORDER = (MISSING, EXTRA, CHANGED, DUPLICATE, STALE_HASH)
BATCH_ROWS = 50_000
CACHE_KIB = 16_384  # SQLite's page cache; sorts and joins beyond it go to temporary files

SourceRow = tuple[str, str, tuple[str | None, ...]]  # key hash, row hash, key texts
TargetRow = tuple[str, str, str, tuple[str | None, ...]]  # key hash, row hash, stored row hash, key texts


@dataclass(frozen=True)
class KeyDifference:
    kind: str
    key: tuple[str | None, ...]
    key_hash: str
    detail: str = ""


class Differences:
    """Every differing key of one table. `numeric_keys`, one flag per key column, says which sort as
    numbers when shown (`10` after `9`); a keyless table has one text "key", its row hash."""

    def __init__(self, numeric_keys: Sequence[bool] = (False,)) -> None:
        self._numeric = list(numeric_keys) or [False]
        self._keys = [f"k{i}" for i in range(len(self._numeric))]
        self._directory: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._counts: dict[str, int] = {}

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            directory = Path(tempfile.mkdtemp(prefix="matrix-differences-"))
            self._directory = directory
            weakref.finalize(self, shutil.rmtree, directory, True)
            self._db = sqlite3.connect(directory / "differences.sqlite", isolation_level=None)
            keys = ", ".join(f"{k} TEXT" for k in self._keys)
            self._db.executescript(f"""
                PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;
                PRAGMA cache_size = -{CACHE_KIB};
                CREATE TABLE src (kh TEXT, rh TEXT, {keys});
                CREATE TABLE tgt (kh TEXT, rh TEXT, srh TEXT, {keys});
                CREATE TABLE diffs (kind TEXT, kh TEXT, detail TEXT, {keys});""")
        return self._db

    def add_source(self, rows: Iterable[SourceRow]) -> None:
        """The source's rows of the differing segments."""
        self._insert("src", ["kh", "rh"], ((kh, rh, *key) for kh, rh, key in rows))

    def add_target(self, rows: Iterable[TargetRow]) -> None:
        """BigQuery's rows of the differing segments: rebuilt hashes, and the stored row hash."""
        self._insert("tgt", ["kh", "rh", "srh"], ((kh, rh, srh, *key) for kh, rh, srh, key in rows))

    def add(self, differences: Iterable[KeyDifference]) -> None:
        """Differences found otherwise (stale hashes), as they are."""
        self._insert("diffs", ["kind", "kh", "detail"], ((d.kind, d.key_hash, d.detail, *d.key) for d in differences))
        self._recount()

    def settle(self, *, keyless: bool) -> None:
        """Turns the rows added so far into differences; the rows themselves are then dropped. Each
        side is grouped by key hash into a table keyed by it first, so the join between them looks
        rows up by key instead of comparing every row of one side with every row of the other."""
        db = self._connection()
        keys = ", ".join(self._keys)
        typed = ", ".join(f"{k} TEXT" for k in self._keys)
        db.executescript(f"""
            CREATE TEMP TABLE s (kh TEXT PRIMARY KEY, n INTEGER, rh TEXT, {typed}) WITHOUT ROWID;
            CREATE TEMP TABLE t (kh TEXT PRIMARY KEY, n INTEGER, rh TEXT, srh TEXT, {typed}) WITHOUT ROWID;
            CREATE INDEX src_kh ON src (kh);
            CREATE INDEX tgt_kh ON tgt (kh);
            INSERT INTO s SELECT kh, COUNT(*), rh, {keys} FROM src GROUP BY kh;
            INSERT INTO t SELECT kh, COUNT(*), rh, srh, {keys} FROM tgt GROUP BY kh;""")
        db.execute(self._copies_diff() if keyless else self._keyed_diff())
        db.executescript("DROP TABLE s; DROP TABLE t; DROP INDEX src_kh; DROP INDEX tgt_kh; DELETE FROM src; "
                         "DELETE FROM tgt; CREATE INDEX IF NOT EXISTS diffs_kh ON diffs (kh);")
        self._recount()

    def _keyed_diff(self) -> str:
        keys = ", ".join(self._keys)
        chosen = ", ".join(f"CASE WHEN s.kh IS NULL THEN t.{k} ELSE s.{k} END AS {k}" for k in self._keys)
        return f"""
            INSERT INTO diffs (kind, kh, detail, {keys})
            SELECT * FROM (
              SELECT CASE WHEN s.kh IS NULL THEN '{EXTRA}' WHEN t.kh IS NULL THEN '{MISSING}'
                          WHEN t.n > 1 THEN '{DUPLICATE}' WHEN t.rh IS NOT s.rh THEN '{CHANGED}' END AS kind,
                     COALESCE(s.kh, t.kh) AS kh,
                     CASE WHEN s.kh IS NULL THEN t.n || ' row(s) in BigQuery only'
                          WHEN t.kh IS NULL THEN 'in the source only'
                          WHEN t.n > 1 THEN t.n || ' rows in BigQuery'
                          WHEN t.srh IS s.rh THEN 'data edited in BigQuery, hash columns untouched'
                          ELSE 'row differs from the source' END AS detail,
                     {chosen}
              FROM s FULL OUTER JOIN t ON s.kh = t.kh)
            WHERE kind IS NOT NULL"""

    def _copies_diff(self) -> str:
        """A keyless table: its "key" is the row hash, compared by the number of copies on each side."""
        return f"""
            INSERT INTO diffs (kind, kh, detail, {self._keys[0]})
            SELECT CASE WHEN held < wanted THEN '{MISSING}' WHEN wanted = 0 THEN '{EXTRA}' ELSE '{DUPLICATE}' END,
                   kh, wanted || IIF(wanted = 1, ' copy', ' copies') || ' in the source, ' || held || ' in BigQuery', kh
            FROM (SELECT COALESCE(s.kh, t.kh) AS kh, COALESCE(s.n, 0) AS wanted, COALESCE(t.n, 0) AS held
                  FROM s FULL OUTER JOIN t ON s.kh = t.kh)
            WHERE wanted != held"""

    def known(self, key_hashes: Sequence[str]) -> set[str]:
        """Those of `key_hashes` that already differ."""
        if not self or not key_hashes:
            return set()
        found = self._connection().execute("SELECT DISTINCT kh FROM diffs WHERE kh IN (SELECT value FROM json_each(?))",
                                           (json.dumps(list(key_hashes)),))
        return {r[0] for r in found}

    def count(self, kind: str) -> int:
        return self._counts.get(kind, 0)

    def __len__(self) -> int:
        return sum(self._counts.values())

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[KeyDifference]:
        return self.shown()

    def shown(self, limit: int | None = None) -> Iterator[KeyDifference]:
        """In display order: by kind (missing, extra, changed, duplicate, stale hash), then by key."""
        if not self:
            return
        ranks = " ".join(f"WHEN '{kind}' THEN {i}" for i, kind in enumerate(KIND_ORDER))
        order = [f"CASE kind {ranks} ELSE 9 END"]
        for key, numeric in zip(self._keys, self._numeric, strict=True):
            order += [f"CAST({key} AS REAL)", key] if numeric else [key]
        cursor = self._connection().execute(
            f"SELECT kind, kh, detail, {', '.join(self._keys)} FROM diffs ORDER BY {', '.join(order)}, kh"
            + (f" LIMIT {int(limit)}" if limit is not None else ""))
        try:
            while rows := cursor.fetchmany(10_000):
                for kind, kh, detail, *key in rows:
                    yield KeyDifference(kind, tuple(key), kh, detail)
        finally:
            cursor.close()

    def write_hashes(self, path: Path, *kinds: str) -> int:
        """The distinct key hashes of these kinds into a Parquet file of one column `key_hash`; their number."""
        schema = pa.schema([pa.field("key_hash", pa.string())])
        written = 0
        cursor = self._connection().execute(
            "SELECT DISTINCT kh FROM diffs WHERE kind IN (SELECT value FROM json_each(?))", (json.dumps(kinds),))
        with pq.ParquetWriter(path, schema) as writer:
            while rows := cursor.fetchmany(BATCH_ROWS):
                writer.write_table(pa.table({"key_hash": pa.array([r[0] for r in rows], pa.string())}))
                written += len(rows)
        return written

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        self._counts = {}

    def _insert(self, table: str, columns: list[str], rows: Iterable[tuple[object, ...]]) -> None:
        names = columns + self._keys
        width = len(names)
        padded = (row if len(row) == width else (*row, *[None] * (width - len(row))) for row in rows)
        db = self._connection()
        db.execute("BEGIN")
        try:
            db.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * width)})", padded)
        finally:
            db.execute("COMMIT")

    def _recount(self) -> None:
        self._counts = dict(self._connection().execute(
            "SELECT kind, COUNT(*) FROM diffs GROUP BY kind").fetchall())
