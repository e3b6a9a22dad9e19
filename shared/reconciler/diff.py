"""Finding the exact differing keys between a loaded table and its snapshot, inside BigQuery.

The snapshot's key index (`shared.key_index`: key columns, `_key_hash`, `_row_hash` of every row) is
loaded into a staging table by a load job, and one FULL OUTER JOIN on `_key_hash` writes every
difference into a small diff table:

* ``missing``   in the snapshot, not in BigQuery
* ``extra``     in BigQuery, not in the snapshot
* ``changed``   in both, different row hash
* ``duplicate`` in the snapshot once, in BigQuery more than once

A keyless table is compared as a multiset of row hashes instead (`shared.reconciler.keyless_diff`).

Nothing but counts and a bounded sample of keys leaves BigQuery. Repairs run as one guarded
script: if this snapshot is still the newest applied one, extra and duplicated rows are deleted
and (deep mode) rows whose data no longer matches their stored hash get the hash of their data, so
the next load rewrites them; then the missing, changed and duplicated keys are requested again.
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared import bq_jobs, key_index, ledger
from shared import sql_literals as lit
from shared.bq_hash_sql import DEEP_KEY_HASH, DEEP_ROW_HASH, deep_hash_query, key_hash_sql
from shared.hashing import canonical_text
from shared.identifiers import quote_bigquery as q
from shared.manifest import Manifest
from shared.reconciler import keyless_diff
from shared.schema import HASH_COLUMNS, KEY_HASH_COLUMN, RAW_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.topology import STAGING_DATASET_SUFFIX

MISSING, EXTRA, CHANGED, DUPLICATE = "missing", "extra", "changed", "duplicate"
KINDS = (MISSING, EXTRA, CHANGED, DUPLICATE)
TO_REQUEST = (MISSING, CHANGED, DUPLICATE)
TO_DELETE = (EXTRA, DUPLICATE)
STAGING_TTL = dt.timedelta(hours=6)


class DiffUnavailable(RuntimeError):
    """The snapshot carries nothing to diff against (a delta without its key index)."""


@dataclass
class Diff:
    """Where the differences are and how many of each kind."""

    diff_table: str
    index_table: str
    keys: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.keys.values())

    @property
    def to_request(self) -> int:
        return sum(self.keys[k] for k in TO_REQUEST)


def _key_names(schema: TableSchema) -> list[str]:
    return [q(KEY_HASH_COLUMN)] if schema.keyless else [q(c.bq_name) for c in schema.key_columns]


def _fields(schema: TableSchema) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(c.bq_name, c.bq_type) for c in schema.key_columns]


def _staging(manifest: Manifest, kind: str, token: str) -> str:
    target = manifest.target
    return f"{target.project}.{target.dataset}{STAGING_DATASET_SUFFIX}.{kind}_{target.table}_{token}"


def stage_index(manifest: Manifest, token: str, manifest_uri: str | None = None) -> str:
    """Loads the snapshot's key index (or, for a full snapshot without one, its parts) into a
    staging table and returns its id. A delta's index is the one the loader compacted beside its
    manifest, so a delta needs `manifest_uri`."""
    target, schema = manifest.target, manifest.table_schema
    if manifest.mode == "full" and not manifest.index_parts:
        uris, fields = [p.uri for p in manifest.parts], bq.table_fields(schema)
    else:
        index = _key_index(manifest, manifest_uri)
        uris, fields = [p.uri for p in index.parts], _fields(schema)
        fields += [bigquery.SchemaField(name, "STRING") for name in HASH_COLUMNS]
        if index.raw_hash_column:
            fields.append(bigquery.SchemaField(RAW_HASH_COLUMN, "INT64"))
    bq.ensure_dataset(target.project, target.dataset + STAGING_DATASET_SUFFIX, default_table_expiration=STAGING_TTL)
    staging_id = _staging(manifest, "index", token)
    bq.create_table(staging_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    if uris:
        job_config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, schema=fields,
                                            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
        try:
            bq_jobs.load_uris(uris, staging_id, job_config, job_id=f"matrix_index_{manifest.target.table}_{token}",
                              location=None)
        except gexc.NotFound as error:  # parts expired or deleted: nothing to diff against, ever
            bq.drop_table(staging_id)
            raise DiffUnavailable(f"the key index of {manifest.run_id} cannot be read: {error.message}") from None
    return staging_id


def _key_index(manifest: Manifest, manifest_uri: str | None) -> key_index.KeyIndex:
    if manifest_uri is None and key_index.ships_patch(manifest):
        raise DiffUnavailable(f"delta snapshot {manifest.run_id}: no manifest location to find its key index by")
    try:
        return key_index.of_snapshot(manifest, manifest_uri or "")
    except key_index.IndexUnavailable as error:
        raise DiffUnavailable(str(error)) from None


def _target_side(manifest: Manifest, deep: bool) -> str:
    """Key columns plus `kh`/`rh`: stored hashes, or in deep mode hashes rebuilt from the data."""
    schema = manifest.table_schema
    table = q(*manifest.target.table_id.split("."))
    keys = ", ".join(q(c.bq_name) for c in schema.key_columns)
    if deep:
        return (f"SELECT {keys}, {q(DEEP_KEY_HASH)} AS kh, {q(DEEP_ROW_HASH)} AS rh "
                f"FROM ({deep_hash_query(schema, table)})")
    return f"SELECT {keys}, {_readable_key_hash(schema)} AS kh, {q(ROW_HASH_COLUMN)} AS rh FROM {table}"


def _readable_key_hash(schema: TableSchema, stored: str = q(KEY_HASH_COLUMN)) -> str:
    """The stored key hash, or where it is no hash at all (a row written by hand), the key hash
    rebuilt from the row's key (a new key is then extra, a copy of a key duplicate), or failing that
    a value of its own: NULLs would join nothing and read as missing, and equal junk would group.
    `stored`: the stored key hash column as the query names it."""
    rebuilt = key_hash_sql(schema) or "CONCAT('-', GENERATE_UUID())"
    return f"IF(IFNULL(REGEXP_CONTAINS({stored}, r'^[0-9a-f]{{32}}$'), FALSE), {stored}, {rebuilt})"


def diff_sql(manifest: Manifest, index_table: str, diff_table: str, *, deep: bool) -> str:
    if manifest.table_schema.keyless:
        return keyless_diff.diff_sql(manifest, index_table, diff_table, deep=deep)
    key_columns = manifest.table_schema.key_columns
    keys = [q(c.bq_name) for c in key_columns]
    target_keys = ", ".join(f"ANY_VALUE({k}) AS t_{i}" for i, k in enumerate(keys))
    chosen = ", ".join(f"COALESCE(s.{k}, t.t_{i})" for i, k in enumerate(keys))
    return (
        f"INSERT INTO {q(*diff_table.split('.'))} (kind, {q(KEY_HASH_COLUMN)}, snapshot_row_hash, "
        f"target_row_hash, target_rows, {', '.join(keys)})\n"
        f"SELECT CASE WHEN t.kh IS NULL THEN '{MISSING}' WHEN s.kh IS NULL THEN '{EXTRA}' "
        f"WHEN t.n > 1 THEN '{DUPLICATE}' ELSE '{CHANGED}' END, COALESCE(s.kh, t.kh), s.rh, t.rh, "
        f"COALESCE(t.n, 0), {chosen}\n"
        f"FROM (SELECT {', '.join(keys)}, {q(KEY_HASH_COLUMN)} AS kh, {q(ROW_HASH_COLUMN)} AS rh "
        f"FROM {q(*index_table.split('.'))}) AS s\n"
        f"FULL OUTER JOIN (SELECT kh, COUNT(*) AS n, MIN(rh) AS rh, {target_keys} "
        f"FROM ({_target_side(manifest, deep)}) GROUP BY kh) AS t ON s.kh = t.kh\n"
        "WHERE s.kh IS NULL OR t.kh IS NULL OR t.n > 1 OR s.rh != t.rh"
    )


def find_differences(manifest: Manifest, *, deep: bool, stats: bq_jobs.JobStats,
                     manifest_uri: str | None = None) -> Diff:
    token = secrets.token_hex(4)
    index_table = stage_index(manifest, token, manifest_uri)
    diff_table = _staging(manifest, "diff", token)
    fields = [bigquery.SchemaField("kind", "STRING"), bigquery.SchemaField(KEY_HASH_COLUMN, "STRING"),
              bigquery.SchemaField("snapshot_row_hash", "STRING"), bigquery.SchemaField("target_row_hash", "STRING"),
              bigquery.SchemaField("target_rows", "INT64"), *_fields(manifest.table_schema)]
    keyless = manifest.table_schema.keyless
    if keyless:
        fields += keyless_diff.diff_fields()
    bq.create_table(diff_table, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    bq_jobs.run(manifest.target.project, diff_sql(manifest, index_table, diff_table, deep=deep), stats=stats)
    diff = Diff(diff_table, index_table)
    counts = (keyless_diff.counts_sql(diff_table) if keyless
              else f"SELECT kind, COUNT(*) AS n FROM {q(*diff_table.split('.'))} GROUP BY kind")
    for row in bq_jobs.run(manifest.target.project, counts, stats=stats):
        diff.keys[str(row["kind"])] = int(row["n"])
    return diff


def json_value(value: object) -> object:
    """A key value for a JSON message: numbers and bools as they are, anything else as its
    canonical text (dates as YYYY-MM-DD, decimals without trailing zeros, bytes as hex)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    return canonical_text(value)


def keys_of(manifest: Manifest, diff: Diff, kinds: tuple[str, ...], limit: int,
            stats: bq_jobs.JobStats) -> dict[str, list[list[object]]]:
    """Up to `limit` keys per kind (in key hash order), as JSON-ready lists of key values; for a
    keyless table the row hash stands for the key."""
    keys = ", ".join(_key_names(manifest.table_schema))
    kinds_sql = ", ".join(lit.string(k) for k in kinds)
    rows = bq_jobs.run(manifest.target.project, (
        f"SELECT kind, {keys} FROM {q(*diff.diff_table.split('.'))} WHERE kind IN ({kinds_sql}) "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY kind ORDER BY {q(KEY_HASH_COLUMN)}) <= {int(limit)}"
    ), stats=stats)
    out: dict[str, list[list[object]]] = {k: [] for k in kinds}
    for row in rows:
        values = list(row.values())
        out[str(values[0])].append([json_value(v) for v in values[1:]])
    return out


@dataclass(frozen=True)
class Repair:
    applied: bool
    deleted: int = 0
    restamped: int = 0


def _by_stored_key_hash(schema: TableSchema, diff_table: str, delete_kinds: str, by_key: str) -> str:
    """Target rows `T` a fingerprint diff found extra or duplicated, by the key hash the diff grouped
    them by: a row carrying another key's hashes (copied by hand) is found under that key's hash,
    so both copies go and the key is requested again, where deleting by the snapshot's key values
    would delete the genuine row and keep the copy. A row whose stored hash is no hash and cannot be
    rebuilt in SQL is found by its key, as the diff took it."""
    stored = f"T.{q(KEY_HASH_COLUMN)}"
    readable = _readable_key_hash(schema, stored)
    by_hash = f"{readable} IN (SELECT D.{q(KEY_HASH_COLUMN)} FROM {diff_table} AS D WHERE D.kind IN ({delete_kinds}))"
    junk = f"NOT IFNULL(REGEXP_CONTAINS({stored}, r'^[0-9a-f]{{32}}$'), FALSE)"
    return f"({by_hash} OR ({junk} AND {by_key}))"


def repair_script(manifest: Manifest, diff: Diff, *, deep: bool) -> str:
    target = manifest.target
    table = q(*target.table_id.split("."))
    ledger_table = ledger.quoted(target.project, target.dataset)
    diff_table = q(*diff.diff_table.split("."))
    match = " AND ".join(f"D.{q(c.bq_name)} = T.{q(c.bq_name)}" for c in manifest.table_schema.key_columns)
    delete_kinds = ", ".join(lit.string(k) for k in TO_DELETE)
    by_key = f"EXISTS (SELECT 1 FROM {diff_table} AS D WHERE D.kind IN ({delete_kinds}) AND {match})"
    doomed = by_key if deep else _by_stored_key_hash(manifest.table_schema, diff_table, delete_kinds, by_key)
    restamp = ""
    if manifest.table_schema.keyless:
        doomed = keyless_diff.doomed(table, diff_table, delete_kinds)
        restamp = keyless_diff.stale_rows_delete(manifest, table) if deep else ""
    elif deep:
        # After the deletes, every row whose stored hashes no longer describe its data gets the
        # hashes of its data: an edited row then differs from the snapshot and the next load
        # rewrites it; a row whose hash columns alone were edited is simply correct again.
        rebuilt = f"({deep_hash_query(manifest.table_schema, table)})"
        stale = (f"(T.{q(KEY_HASH_COLUMN)} != D.{q(DEEP_KEY_HASH)} OR T.{q(ROW_HASH_COLUMN)} != D.{q(DEEP_ROW_HASH)})")
        restamp = (
            f"  SET v_restamped = (SELECT COUNT(*) FROM {rebuilt} AS T WHERE {stale.replace('D.', 'T.')});\n"
            f"  UPDATE {table} AS T SET {q(KEY_HASH_COLUMN)} = D.{q(DEEP_KEY_HASH)}, "
            f"{q(ROW_HASH_COLUMN)} = D.{q(DEEP_ROW_HASH)} FROM {rebuilt} AS D WHERE {match} AND {stale};\n"
        )
    return f"""
{lit.declare("v_run_id", "STRING", lit.string(manifest.run_id))}
DECLARE v_latest STRING DEFAULT (SELECT run_id FROM {ledger_table}
  WHERE {ledger.applied_since_truncate(ledger_table, lit.string(target.table_id))} ORDER BY sequence DESC LIMIT 1);
DECLARE v_deleted INT64 DEFAULT 0;
DECLARE v_restamped INT64 DEFAULT 0;
IF v_latest = v_run_id THEN
  BEGIN TRANSACTION;
  SET v_deleted = (SELECT COUNT(*) FROM {table} AS T WHERE {doomed});
  DELETE FROM {table} AS T WHERE {doomed};
{restamp}  COMMIT TRANSACTION;
END IF;
SELECT IFNULL(v_latest = v_run_id, FALSE) AS applied, v_deleted AS deleted, v_restamped AS restamped;
""".strip()


def repair(manifest: Manifest, diff: Diff, *, deep: bool, stats: bq_jobs.JobStats) -> Repair:
    """Deletes extra and duplicated rows (and re-stamps stale hashes in deep mode) if this snapshot
    is still the newest applied one; does nothing otherwise."""
    row = bq_jobs.run(manifest.target.project, repair_script(manifest, diff, deep=deep), stats=stats)[-1]
    return Repair(bool(row["applied"]), int(row["deleted"] or 0), int(row["restamped"] or 0))


def drop(diff: Diff) -> None:
    for table_id in (diff.diff_table, diff.index_table):
        bq.drop_table(table_id)
