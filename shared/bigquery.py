"""BigQuery adapter: datasets, tables from our schema, queries and jobs with sane retries."""
from __future__ import annotations

import datetime as dt
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from shared.clients import REQUEST_TIMEOUT_ENV, bigquery_client, emulated, request_timeout_s
from shared.identifiers import quote_bigquery
from shared.schema import HASH_COLUMNS, TableSchema

# The emulator answers a failed script with HTTP 500, which the client would retry for ten minutes.
_EMULATOR_RETRY = gretry.Retry(timeout=30)


def client(project: str) -> bigquery.Client:
    return bigquery_client(project)


def _retry() -> gretry.Retry:
    return _EMULATOR_RETRY if emulated() else bigquery.DEFAULT_RETRY


Params = Sequence[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter]


def query(project: str, sql: str, params: Params = (), job_id: str | None = None) -> list[bigquery.Row]:
    if job_id is None:
        return list(query_results(project, sql, params, retry=_retry()))
    job_config = bigquery.QueryJobConfig(query_parameters=list(params))
    with _forgetting_on_not_found(project):  # jobs.query takes no job id: jobs.insert, then wait
        job = client(project).query(sql, job_config=job_config, job_id=job_id, retry=_retry(), job_retry=None)
        return list(job.result(retry=_retry()))


# Starts with SELECT or WITH (after comments and parentheses) and holds no `;` but a last one: a single
# statement that only reads, so running it again changes nothing.
_READ_ONLY = re.compile(r"(?:\s|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/|\()*(?:SELECT|WITH)\b", re.I | re.S)


def reads_only(sql: str) -> bool:
    return _READ_ONLY.match(sql) is not None and ";" not in sql.rstrip().rstrip(";")


def query_results(project: str, sql: str, params: Params = (), *, retry: gretry.Retry,
                  script: bool = False) -> bigquery.table.RowIterator:
    """Runs a query or script with one jobs.query request (not jobs.insert + 2 getQueryResults) and
    returns its rows, paged lazily past the first page, with `job_id`, `total_bytes_processed` and
    `num_dml_affected_rows`. `retry` retries the request under one requestId (BigQuery answers a repeat
    with the same query). Only a statement that reads (`reads_only`) is run again if it fails (the
    default job retry, deployed), never one that writes: a rerun under a new requestId could apply it twice."""
    writes = script or not reads_only(sql)
    job_config = bigquery.QueryJobConfig(query_parameters=list(params))
    with _forgetting_on_not_found(project):
        rows = client(project).query_and_wait(
            sql, job_config=job_config, retry=retry,
            job_retry=None if writes or emulated() else DEFAULT_JOB_RETRY)
        _raise_reported_error(project, rows, retry)
    return rows


def _raise_reported_error(project: str, rows: bigquery.table.RowIterator, retry: gretry.Retry) -> None:
    """The emulator answers a failed jobs.query with HTTP 200 and `errors`, which the client ignores
    (BigQuery answers with an error status). The job then says whether it failed: its error is raised
    as jobs.insert + getQueryResults raised it. (BigQuery may list errors of a job that succeeded.)"""
    errors = (getattr(rows, "_first_page_response", None) or {}).get("errors")
    if not errors:
        return
    if rows.job_id is None:
        raise gexc.from_http_status(400, str(errors[0].get("message")), errors=errors)
    job = client(project).get_job(rows.job_id, project=rows.project, location=rows.location, retry=retry)
    if job.error_result:
        job.result(retry=retry)
        raise gexc.from_http_status(400, str(job.error_result.get("message")), errors=errors)


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


# Datasets and bookkeeping tables this process has seen exist (ensure_dataset, ensure_table), per client,
# so a warm instance checks each once; reset_clients() gives a new client and so an empty cache. Any
# NotFound of a query, load or table creation empties it: something was dropped, the next ensure looks again.
_known: weakref.WeakKeyDictionary[bigquery.Client, dict[str, object]] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _known_of(project: str) -> dict[str, object]:
    """The cache of the project's client (call under _known_lock); a stand-in client that cannot be
    weakly referenced (a test's) gets a fresh one each time, so nothing is remembered for it."""
    bq_client = client(project)
    try:
        return _known.setdefault(bq_client, {})
    except TypeError:
        return {}


def _known_as(project: str, object_id: str) -> object | None:
    with _known_lock:
        return _known_of(project).get(object_id)


def _remember_known(project: str, object_id: str, value: object) -> None:
    with _known_lock:
        _known_of(project)[object_id] = value


def forget_known(project: str, object_id: str | None = None) -> None:
    """Forget that `object_id` (or anything of the project) exists, so the next ensure checks again."""
    with _known_lock:
        known = _known_of(project)
        if object_id is None:
            known.clear()
        else:
            known.pop(object_id, None)


@contextmanager
def _forgetting_on_not_found(project: str) -> Iterator[None]:
    try:
        yield
    except gexc.NotFound:
        forget_known(project)
        raise


def ensure_dataset(project: str, dataset: str, location: str = "US",
                   default_table_expiration: dt.timedelta | None = None) -> bigquery.Dataset:
    """The dataset, checked to exist (once per process, until a NotFound); against the local emulators
    a missing one is created. Deployed, the functions' dataset-level roles grant no
    bigquery.datasets.create or .update, so an existing dataset is only looked at and a missing one
    is a clear error naming the fix."""
    dataset_id = f"{project}.{dataset}"
    known = _known_as(project, dataset_id)
    if isinstance(known, bigquery.Dataset):
        return known
    try:
        found = client(project).get_dataset(dataset_id)
    except gexc.NotFound:
        if not emulated():
            raise MissingDatasetError(f"dataset {project}.{dataset} does not exist: deploy infra/ (Terraform "
                                      "creates the target and staging datasets)") from None
        found = create_missing_dataset(project, dataset, location, default_table_expiration)
    _remember_known(project, dataset_id, found)
    return found


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
        forget_known(project, table_id)
        return None


def create_table(table_id: str, fields: list[bigquery.SchemaField], *, clustering: list[str] | None = None,
                 expires: dt.datetime | None = None) -> bigquery.Table:
    table = bigquery.Table(table_id, schema=fields)
    if clustering:
        table.clustering_fields = clustering[:4]
    if expires is not None:
        table.expires = expires
    with _forgetting_on_not_found(table_id.split(".")[0]):  # its dataset is gone
        return client(table_id.split(".")[0]).create_table(table, exists_ok=True, retry=_retry())


def load_parquet_file(table_id: str, path: Path) -> int:
    """Appends a local Parquet file to an existing table with one load job (free in BigQuery, and
    not bound by a query's 10 MB request limit); returns the rows loaded."""
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                    write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    with path.open("rb") as stream, _forgetting_on_not_found(table_id.split(".")[0]):
        job = client(table_id.split(".")[0]).load_table_from_file(stream, table_id, job_config=config)
        job.result(retry=_retry())
    return int(job.output_rows or 0)


def drop_table(table_id: str) -> None:
    forget_known(table_id.split(".")[0], table_id)
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
    """Runs a multi-statement script and returns its last statement's rows. A failed script is not
    run again here (a repeated request is, under its requestId): the caller decides, and the load
    script guards itself with the ledger should a redelivery run it again."""
    retry = _EMULATOR_SCRIPT_RETRY if emulated() else bigquery.DEFAULT_RETRY
    return list(query_results(project, sql, retry=retry, script=True))


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
    """Creates a bookkeeping table (ledger, results), or adds the columns an older version lacks; once
    per process for the same columns, until a NotFound (see `_known`)."""
    project = table_id.split(".")[0]
    wanted = tuple((f.name.lower(), f.field_type) for f in fields)
    if _known_as(project, table_id) == wanted:
        return
    existing = get_table(table_id)
    if existing is None:
        create_table(table_id, list(fields), clustering=clustering)
    else:
        have = {f.name.lower() for f in existing.schema}
        missing = [bigquery.SchemaField(f.name, f.field_type) for f in fields if f.name.lower() not in have]
        if missing:
            add_columns(table_id, missing)
    _remember_known(project, table_id, wanted)


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
