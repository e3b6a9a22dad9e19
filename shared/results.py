"""Results tables written by the reconciler and the validator, next to the ledger.

`_sync_reconciliations` holds one *replication certificate* per reconciliation: what was compared,
what differed by kind, what was repaired or requested again, and what it cost.
`_sync_validations` holds one typed row per named check. Both gain columns over time: `write` adds
the ones an older table lacks, so a deployed dataset keeps working after an upgrade.
"""
from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared import logs
from shared.identifiers import quote_bigquery
from shared.topology import RECONCILIATION_TABLE, VALIDATION_TABLE

log = logs.get(__name__)

# Reconciliation verdicts.
MATCH = "match"
MISMATCH = "mismatch"
SUPERSEDED = "superseded"
UNVERIFIED = "unverified"  # nothing to check against: the snapshot is gone

RECONCILIATION_FIELDS = [
    bigquery.SchemaField("table_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("verdict", "STRING", mode="REQUIRED", description="match, mismatch or superseded"),
    bigquery.SchemaField("source_rows", "INT64"),
    bigquery.SchemaField("target_rows", "INT64"),
    bigquery.SchemaField("source_fingerprint", "STRING"),
    bigquery.SchemaField("target_fingerprint", "STRING"),
    bigquery.SchemaField("bytes_processed", "INT64", description="sum of the query jobs' total_bytes_processed"),
    bigquery.SchemaField("checked_at", "TIMESTAMP"),
    bigquery.SchemaField("message", "STRING"),
    bigquery.SchemaField("mode", "STRING", description="fingerprint (hash columns) or deep (hashes rebuilt from data)"),
    bigquery.SchemaField("missing_rows", "INT64", description="in the snapshot, not in BigQuery"),
    bigquery.SchemaField("extra_rows", "INT64", description="in BigQuery, not in the snapshot"),
    bigquery.SchemaField("changed_rows", "INT64", description="same key, different row hash"),
    bigquery.SchemaField("duplicate_rows", "INT64", description="keys BigQuery holds more than once"),
    bigquery.SchemaField("stale_hash_rows", "INT64", description="deep mode: data no longer matches its stored hash"),
    bigquery.SchemaField("rows_deleted", "INT64", description="rows removed from BigQuery by the repair"),
    bigquery.SchemaField("rows_restamped", "INT64", description="stored hashes reset to the data's, so a reload rewrites them"),
    bigquery.SchemaField("keys_requested", "INT64", description="keys asked of the extractor again"),
    bigquery.SchemaField("full_snapshot_requested", "BOOL"),
    bigquery.SchemaField("jobs", "INT64"),
    bigquery.SchemaField("duration_s", "FLOAT64"),
    bigquery.SchemaField("details", "STRING", description="JSON: sample keys per kind, repair outcome"),
]

VALIDATION_FIELDS = [
    bigquery.SchemaField("table_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("check_name", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("passed", "BOOL", mode="REQUIRED"),
    bigquery.SchemaField("observed", "STRING"),
    bigquery.SchemaField("expected", "STRING"),
    bigquery.SchemaField("checked_at", "TIMESTAMP"),
    bigquery.SchemaField("message", "STRING"),
    bigquery.SchemaField("severity", "STRING", description="error (fails the table) or warning"),
]

_TABLES = {RECONCILIATION_TABLE: RECONCILIATION_FIELDS, VALIDATION_TABLE: VALIDATION_FIELDS}


def table_id(project: str, dataset: str, name: str) -> str:
    return f"{project}.{dataset}.{name}"


def ensure(project: str, dataset: str, name: str) -> None:
    """Creates the results table, or adds the columns an older version of it lacks."""
    bq.ensure_table(table_id(project, dataset, name), _TABLES[name], clustering=["table_id"])


def write(project: str, dataset: str, name: str, rows: list[dict[str, object]]) -> None:
    """Appends the rows. `ensure` checks the table once per process: should it have been dropped since,
    the INSERT's NotFound (nothing written) makes it check, create and insert once more."""
    ensure(project, dataset, name)
    if not rows:
        return
    try:
        bq.insert_rows(table_id(project, dataset, name), _TABLES[name], rows)
    except gexc.NotFound:
        log.warning("%s was not found; created again", table_id(project, dataset, name))
        ensure(project, dataset, name)
        bq.insert_rows(table_id(project, dataset, name), _TABLES[name], rows)


def _newest_of_runs(project: str, dataset: str, name: str, runs: dict[str, str], rank: str) -> list[dict[str, object]]:
    """Rows of a results table for the given run of each table (table id -> run id), ranked newest
    first within each run: a verdict on another run (a late or repeated delivery's `superseded`)
    never stands in for the run asked about."""
    if not runs or bq.get_table(table_id(project, dataset, name)) is None:
        return []
    rows = bq.query(project, (
        f"SELECT * FROM {quote_bigquery(project, dataset, name)} WHERE run_id IN UNNEST(@run_ids) "
        f"QUALIFY {rank} OVER (PARTITION BY table_id, run_id ORDER BY checked_at DESC) = 1"),
        [bigquery.ArrayQueryParameter("run_ids", "STRING", sorted(set(runs.values())))])
    return [dict(r.items()) for r in rows if runs.get(str(r["table_id"])) == r["run_id"]]


def reconciliations_of(project: str, dataset: str, runs: dict[str, str]) -> dict[str, dict[str, object]]:
    """The newest certificate of each table's given run (table id -> run id)."""
    return {str(r["table_id"]): r for r in _newest_of_runs(project, dataset, RECONCILIATION_TABLE, runs, "ROW_NUMBER()")}


def validations_of(project: str, dataset: str, runs: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    """Every check of the newest validation of each table's given run (table id -> run id)."""
    out: dict[str, list[dict[str, object]]] = {}
    rows = _newest_of_runs(project, dataset, VALIDATION_TABLE, runs, "DENSE_RANK()")
    for row in sorted(rows, key=lambda r: str(r["check_name"])):
        out.setdefault(str(row["table_id"]), []).append(row)
    return out
