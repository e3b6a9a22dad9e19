"""Results tables written by the reconciler and the validator, next to the ledger."""
from __future__ import annotations

from google.cloud import bigquery

from shared import bigquery as bq
from shared.topology import RECONCILIATION_TABLE, VALIDATION_TABLE

RECONCILIATION_FIELDS = [
    bigquery.SchemaField("table_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("verdict", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("source_rows", "INT64"),
    bigquery.SchemaField("target_rows", "INT64"),
    bigquery.SchemaField("source_fingerprint", "STRING"),
    bigquery.SchemaField("target_fingerprint", "STRING"),
    bigquery.SchemaField("bytes_processed", "INT64"),
    bigquery.SchemaField("checked_at", "TIMESTAMP"),
    bigquery.SchemaField("message", "STRING"),
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
]

_TABLES = {RECONCILIATION_TABLE: RECONCILIATION_FIELDS, VALIDATION_TABLE: VALIDATION_FIELDS}


def table_id(project: str, dataset: str, name: str) -> str:
    return f"{project}.{dataset}.{name}"


def write(project: str, dataset: str, name: str, rows: list[dict[str, object]]) -> None:
    fields = _TABLES[name]
    full_id = table_id(project, dataset, name)
    if bq.get_table(full_id) is None:
        bq.create_table(full_id, fields, clustering=["table_id"])
    if rows:
        bq.insert_rows(full_id, fields, rows)
