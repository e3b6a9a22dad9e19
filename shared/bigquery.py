"""BigQuery adapter: datasets, tables from our schema, queries and jobs with sane retries."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigquery

from shared.clients import bigquery_client, emulated
from shared.schema import HASH_COLUMNS, TableSchema

# The emulator answers a failed script with HTTP 500, which the client would retry for ten minutes.
_EMULATOR_RETRY = gretry.Retry(timeout=30)


def client(project: str) -> bigquery.Client:
    return bigquery_client(project)


def _retry() -> gretry.Retry:
    return _EMULATOR_RETRY if emulated() else bigquery.DEFAULT_RETRY


def query(project: str, sql: str, params: Sequence[bigquery.ScalarQueryParameter] = (),
          job_id: str | None = None) -> list[bigquery.Row]:
    job_config = bigquery.QueryJobConfig(query_parameters=list(params))
    job = client(project).query(
        sql, job_config=job_config, job_id=job_id, retry=_retry(), job_retry=None if emulated() else bigquery.DEFAULT_JOB_RETRY
    )
    return list(job.result(retry=_retry()))


def ensure_dataset(project: str, dataset: str, location: str = "US",
                   default_table_expiration: dt.timedelta | None = None) -> None:
    ds = bigquery.Dataset(f"{project}.{dataset}")
    ds.location = location
    if default_table_expiration is not None:
        ds.default_table_expiration_ms = int(default_table_expiration.total_seconds() * 1000)
    client(project).create_dataset(ds, exists_ok=True)


def table_fields(schema: TableSchema) -> list[bigquery.SchemaField]:
    """Target columns are NULLABLE even where the source says NOT NULL: the validator checks that,
    and a source that relaxes a column must not make loads fail."""
    fields = [bigquery.SchemaField(c.bq_name, c.bq_type, mode="NULLABLE") for c in schema.columns]
    fields += [bigquery.SchemaField(name, "STRING", mode="REQUIRED") for name in HASH_COLUMNS]
    return fields


def get_table(table_id: str) -> bigquery.Table | None:
    project = table_id.split(".")[0]
    try:
        return client(project).get_table(table_id)
    except gexc.NotFound:
        return None


def create_table(table_id: str, fields: list[bigquery.SchemaField], *, clustering: list[str] | None = None,
                 expires: dt.datetime | None = None) -> bigquery.Table:
    table = bigquery.Table(table_id, schema=fields)
    if clustering:
        table.clustering_fields = clustering[:4]
    if expires is not None:
        table.expires = expires
    return client(table_id.split(".")[0]).create_table(table, exists_ok=True)


def drop_table(table_id: str) -> None:
    client(table_id.split(".")[0]).delete_table(table_id, not_found_ok=True)


def insert_rows(table_id: str, fields: list[bigquery.SchemaField], rows: list[dict[str, object]]) -> None:
    """Appends rows with a DML INSERT (not streaming), so they are visible to the next query at once."""
    names = [f.name for f in fields]
    values = []
    params = []
    for i, row in enumerate(rows):
        placeholders = []
        for field in fields:
            name = f"p{i}_{len(params)}"
            params.append(bigquery.ScalarQueryParameter(name, field.field_type, row.get(field.name)))
            placeholders.append(f"@{name}")
        values.append(f"({', '.join(placeholders)})")
    columns = ", ".join(f"`{n}`" for n in names)
    query(table_id.split(".")[0], f"INSERT INTO `{table_id}` ({columns}) VALUES {', '.join(values)}", params)
