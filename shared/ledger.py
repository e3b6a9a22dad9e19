"""The ledger: one row per snapshot the loader saw, applied or not, in the target's dataset."""
from __future__ import annotations

from google.cloud import bigquery

from shared import bigquery as bq
from shared.identifiers import quote_bigquery
from shared.topology import LEDGER_TABLE

APPLIED = "applied"
DUPLICATE = "duplicate"
STALE = "stale"
REFUSED = "refused"

FIELDS = [
    bigquery.SchemaField("table_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("source_table", "STRING"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("sequence", "INT64"),
    bigquery.SchemaField("mode", "STRING"),
    bigquery.SchemaField("status", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("manifest_uri", "STRING"),
    bigquery.SchemaField("rows_inserted", "INT64"),
    bigquery.SchemaField("rows_updated", "INT64"),
    bigquery.SchemaField("rows_deleted", "INT64"),
    bigquery.SchemaField("source_rows", "INT64"),
    bigquery.SchemaField("bytes", "INT64"),
    bigquery.SchemaField("extracted_at", "TIMESTAMP"),
    bigquery.SchemaField("recorded_at", "TIMESTAMP"),
    bigquery.SchemaField("message", "STRING"),
]


def ledger_id(project: str, dataset: str) -> str:
    return f"{project}.{dataset}.{LEDGER_TABLE}"


def quoted(project: str, dataset: str) -> str:
    return quote_bigquery(project, dataset, LEDGER_TABLE)


def ensure(project: str, dataset: str) -> None:
    if bq.get_table(ledger_id(project, dataset)) is None:
        bq.create_table(ledger_id(project, dataset), FIELDS, clustering=["table_id"])


def record(project: str, dataset: str, row: dict[str, object]) -> None:
    """A ledger row outside a load transaction: refused, stale or duplicate snapshots."""
    ensure(project, dataset)
    bq.insert_rows(ledger_id(project, dataset), FIELDS, [row])


def applied_run(project: str, dataset: str, table_id: str, run_id: str) -> dict[str, object] | None:
    rows = bq.query(
        project,
        f"SELECT * FROM {quoted(project, dataset)} WHERE table_id = @table_id AND run_id = @run_id "
        f"AND status = '{APPLIED}' ORDER BY recorded_at DESC LIMIT 1",
        [bigquery.ScalarQueryParameter("table_id", "STRING", table_id),
         bigquery.ScalarQueryParameter("run_id", "STRING", run_id)],
    )
    return dict(rows[0].items()) if rows else None


def latest_applied(project: str, dataset: str, table_id: str) -> dict[str, object] | None:
    rows = bq.query(
        project,
        f"SELECT * FROM {quoted(project, dataset)} WHERE table_id = @table_id AND status = '{APPLIED}' "
        "ORDER BY sequence DESC LIMIT 1",
        [bigquery.ScalarQueryParameter("table_id", "STRING", table_id)],
    )
    return dict(rows[0].items()) if rows else None
