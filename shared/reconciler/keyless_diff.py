"""The differences of a keyless table: its loaded rows and its snapshot compared as multisets of
row hashes, (hash, number of copies) against (hash, number of copies).

A keyless table's `_key_hash` is its `_row_hash`, so the diff table has the shape of a keyed one
with the hash as the key, plus the snapshot's number of copies. Kinds, per row hash:

* ``missing``   BigQuery holds fewer copies than the snapshot (none, or some)
* ``extra``     BigQuery holds copies the snapshot has none of
* ``duplicate`` BigQuery holds more copies than the snapshot, which has some

There is no ``changed``: without a key, an updated row is one missing hash plus one extra. Counts
are copies, not hashes. Repairs delete every copy of an extra or duplicated hash (the requested
full snapshot inserts the right number again, see `shared.loader.keyless_sql`).
"""
from __future__ import annotations

from google.cloud import bigquery

from shared.bq_hash_sql import DEEP_KEY_HASH, DEEP_ROW_HASH, deep_hash_query
from shared.identifiers import quote_bigquery as q
from shared.manifest import Manifest
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN

MISSING, EXTRA, DUPLICATE = "missing", "extra", "duplicate"
SNAPSHOT_ROWS = "snapshot_rows"
NO_HASH = "-"  # stands for a NULL stored row hash (a row written by hand): extra, and deletable by it


def diff_fields() -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(SNAPSHOT_ROWS, "INT64")]


def target_side(manifest: Manifest, deep: bool) -> str:
    """`rh` of every loaded row: the stored row hash, or in deep mode the one rebuilt from its data."""
    table = q(*manifest.target.table_id.split("."))
    if deep:
        return f"SELECT {q(DEEP_ROW_HASH)} AS rh FROM ({deep_hash_query(manifest.table_schema.hash_keyed(), table)})"
    return f"SELECT IFNULL({q(ROW_HASH_COLUMN)}, '{NO_HASH}') AS rh FROM {table}"


def diff_sql(manifest: Manifest, index_table: str, diff_table: str, *, deep: bool) -> str:
    row_hash = q(ROW_HASH_COLUMN)
    snapshot = f"SELECT {row_hash} AS h, COUNT(*) AS n FROM {q(*index_table.split('.'))} GROUP BY {row_hash}"
    loaded = f"SELECT rh AS h, COUNT(*) AS n FROM ({target_side(manifest, deep)}) GROUP BY rh"
    return (
        f"INSERT INTO {q(*diff_table.split('.'))} (kind, {q(KEY_HASH_COLUMN)}, snapshot_row_hash, "
        f"target_row_hash, target_rows, {SNAPSHOT_ROWS})\n"
        f"SELECT CASE WHEN t.h IS NULL OR s.n > t.n THEN '{MISSING}' WHEN s.h IS NULL THEN '{EXTRA}' "
        f"ELSE '{DUPLICATE}' END, COALESCE(s.h, t.h), s.h, t.h, IFNULL(t.n, 0), IFNULL(s.n, 0)\n"
        f"FROM ({snapshot}) AS s\nFULL OUTER JOIN ({loaded}) AS t ON s.h = t.h\n"
        "WHERE s.h IS NULL OR t.h IS NULL OR s.n != t.n"
    )


def counts_sql(diff_table: str) -> str:
    """Copies per kind: how many rows BigQuery lacks or holds too many of."""
    return (f"SELECT kind, SUM(ABS({SNAPSHOT_ROWS} - target_rows)) AS n FROM {q(*diff_table.split('.'))} "
            "GROUP BY kind")


def doomed(table: str, diff_table: str, kinds: str) -> str:
    """Rows of `table` (alias T) whose row hash is one of the diff's `kinds` (a list of literals)."""
    return (f"IFNULL(T.{q(ROW_HASH_COLUMN)}, '{NO_HASH}') IN (SELECT D.{q(KEY_HASH_COLUMN)} FROM {diff_table} AS D "
            f"WHERE D.kind IN ({kinds}))")


def stale_rows_delete(manifest: Manifest, table: str) -> str:
    """Deep mode: a keyless row whose stored hash no longer describes its data cannot be re-stamped
    (nothing identifies it), so every copy under that stored hash is deleted; the diff already
    counts them missing, and the requested full snapshot inserts them again."""
    rebuilt = f"({deep_hash_query(manifest.table_schema.hash_keyed(), table)})"
    stale = f"R.{q(ROW_HASH_COLUMN)} != R.{q(DEEP_ROW_HASH)} OR R.{q(KEY_HASH_COLUMN)} != R.{q(DEEP_KEY_HASH)}"
    condition = f"T.{q(ROW_HASH_COLUMN)} IN (SELECT R.{q(ROW_HASH_COLUMN)} FROM {rebuilt} AS R WHERE {stale})"
    return (f"  SET v_deleted = v_deleted + (SELECT COUNT(*) FROM {table} AS T WHERE {condition});\n"
            f"  DELETE FROM {table} AS T WHERE {condition};\n")
