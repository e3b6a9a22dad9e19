"""BigQuery adapter: datasets, tables from our schema, queries and jobs with sane retries."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigquery

from shared.clients import REQUEST_TIMEOUT_ENV, bigquery_client, emulated, request_timeout_s
from shared.identifiers import quote_bigquery
from shared.schema import HASH_COLUMNS, TableSchema

# The emulator answers a failed script with HTTP 500, which the client would retry for ten minutes.
_EMULATOR_RETRY = gretry.Retry(timeout=30)


def client(project: str) -> bigquery.Client:
    return bigquery_client(project)


def _retry() -> gretry.Retry:
    return _EMULATOR_RETRY if emulated() else bigquery.DEFAULT_RETRY


def query(project: str, sql: str, params: Sequence[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter] = (),
          job_id: str | None = None) -> list[bigquery.Row]:
    job_config = bigquery.QueryJobConfig(query_parameters=list(params))
    job = client(project).query(
        sql, job_config=job_config, job_id=job_id, retry=_retry(), job_retry=None if emulated() else bigquery.DEFAULT_JOB_RETRY
    )
    return list(job.result(retry=_retry()))


def request_timed_out(error: BaseException) -> bool:
    """Whether `error` is a BigQuery request that outlived its read timeout (MATRIX_BIGQUERY_REQUEST_TIMEOUT_S):
    the `requests` ReadTimeout itself (the emulator's retry does not retry it), or the RetryError the
    client's default retry gives up with once it has retried such timeouts to its deadline. A GCS
    request's timeout (another URL) and a connect timeout (an unreachable host) are not this."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout) and not isinstance(
                current, requests.exceptions.ConnectTimeout):
            url = str(getattr(getattr(current, "request", None), "url", None) or "")
            return "/bigquery/" in url
        cause = current.cause if isinstance(current, gexc.RetryError) else None
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return False


def request_timeout_hint() -> str:
    """The end of a sentence about a timed-out request: names the setting, its value and the fix."""
    try:
        seconds = f"{request_timeout_s():g}"
    except ValueError:
        seconds = "?"
    return f"took longer than {REQUEST_TIMEOUT_ENV}={seconds} s; raise it for wide tables"


class MissingDatasetError(RuntimeError):
    """A deployed dataset that does not exist: Terraform (infra/) creates datasets, the functions never do."""


def ensure_dataset(project: str, dataset: str, location: str = "US",
                   default_table_expiration: dt.timedelta | None = None) -> bigquery.Dataset:
    """The dataset, checked to exist; against the local emulators a missing one is created. Deployed,
    the functions' dataset-level roles grant no bigquery.datasets.create or .update, so an existing
    dataset is only looked at and a missing one is a clear error naming the fix."""
    try:
        return client(project).get_dataset(f"{project}.{dataset}")
    except gexc.NotFound:
        if not emulated():
            raise MissingDatasetError(f"dataset {project}.{dataset} does not exist: deploy infra/ (Terraform "
                                      "creates the target and staging datasets)") from None
    return create_missing_dataset(project, dataset, location, default_table_expiration)


def create_missing_dataset(project: str, dataset: str, location: str,
                           default_table_expiration: dt.timedelta | None) -> bigquery.Dataset:
    """Local stack only (see ensure_dataset)."""
    ds = bigquery.Dataset(f"{project}.{dataset}")
    ds.location = location
    if default_table_expiration is None:
        return client(project).create_dataset(ds, exists_ok=True)
    ds.default_table_expiration_ms = int(default_table_expiration.total_seconds() * 1000)
    created = client(project).create_dataset(ds, exists_ok=True)
    if created.default_table_expiration_ms != ds.default_table_expiration_ms:  # bqemulator drops it on create
        created.default_table_expiration_ms = ds.default_table_expiration_ms
        return client(project).update_dataset(created, ["default_table_expiration_ms"])
    return created


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
    return client(table_id.split(".")[0]).create_table(table, exists_ok=True, retry=_retry())


def load_parquet_file(table_id: str, path: Path) -> int:
    """Appends a local Parquet file to an existing table with one load job (free in BigQuery, and
    not bound by a query's 10 MB request limit); returns the rows loaded."""
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    with path.open("rb") as stream:
        job = client(table_id.split(".")[0]).load_table_from_file(stream, table_id, job_config=config)
    job.result(retry=_retry())
    return int(job.output_rows or 0)


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


# The emulator answers a failing script with 400 or 500; only a refused connection is worth a retry here,
# the caller decides about the rest.
_EMULATOR_SCRIPT_RETRY = gretry.Retry(
    predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.TooManyRequests, ConnectionError,
                                       requests.exceptions.ConnectionError),
    timeout=30,
)


def script(project: str, sql: str) -> list[bigquery.Row]:
    """Runs a multi-statement script and returns its last statement's rows. Retrying a whole script
    is safe only because the load script guards itself with the ledger."""
    retry = _EMULATOR_SCRIPT_RETRY if emulated() else bigquery.DEFAULT_RETRY
    job = client(project).query(sql, retry=retry, job_retry=None if emulated() else bigquery.DEFAULT_JOB_RETRY)
    return list(job.result(retry=retry))


def _ddl_type(bq_type: str) -> str:
    # The emulator turns a bare NUMERIC in DDL into DuckDB's DECIMAL(18,3), silently losing digits.
    return "NUMERIC(38, 9)" if emulated() and bq_type.upper() == "NUMERIC" else bq_type


def _sync_schema(table_id: str, wanted: dict[str, bigquery.SchemaField]) -> None:
    """The emulator applies column DDL to its data but not to the schema it reports: patch that too."""
    table = client(table_id.split(".")[0]).get_table(table_id)
    current = {f.name.lower(): f for f in table.schema}
    if all(name in current and current[name].field_type == f.field_type for name, f in wanted.items()):
        return
    fields = [wanted.get(f.name.lower(), f) for f in table.schema]
    fields += [f for name, f in wanted.items() if name not in current]
    table.schema = fields
    client(table_id.split(".")[0]).update_table(table, ["schema"])


def ensure_table(table_id: str, fields: Sequence[bigquery.SchemaField], clustering: list[str]) -> None:
    """Creates a bookkeeping table (ledger, results), or adds the columns an older version lacks."""
    existing = get_table(table_id)
    if existing is None:
        create_table(table_id, list(fields), clustering=clustering)
        return
    have = {f.name.lower() for f in existing.schema}
    missing = [bigquery.SchemaField(f.name, f.field_type) for f in fields if f.name.lower() not in have]
    if missing:
        add_columns(table_id, missing)


def add_columns(table_id: str, fields: Sequence[bigquery.SchemaField]) -> None:
    """Adds NULLABLE columns (a no-op for those already there)."""
    project = table_id.split(".")[0]
    for field in fields:
        query(project, f"ALTER TABLE {quote_bigquery(*table_id.split('.'))} "
                       f"ADD COLUMN IF NOT EXISTS {quote_bigquery(field.name)} {_ddl_type(field.field_type)}")
    _sync_schema(table_id, {f.name.lower(): f for f in fields})


def widen_columns(table_id: str, types: dict[str, str]) -> None:
    """Changes column types along BigQuery's lossless coercions (INT64 -> NUMERIC -> BIGNUMERIC)."""
    project = table_id.split(".")[0]
    table = client(project).get_table(table_id)
    wanted = {}
    for field in table.schema:
        new_type = types.get(field.name) or types.get(field.name.lower())
        if new_type is None:
            continue
        query(project, f"ALTER TABLE {quote_bigquery(*table_id.split('.'))} "
                       f"ALTER COLUMN {quote_bigquery(field.name)} SET DATA TYPE {_ddl_type(new_type)}")
        wanted[field.name.lower()] = bigquery.SchemaField(field.name, new_type, mode=field.mode)
    _sync_schema(table_id, wanted)
