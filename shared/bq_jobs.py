"""BigQuery jobs beyond plain queries: queries that also report what they cost, for the replication
certificate, and load jobs under ids the caller derives, so a repeated call finds the job it started.

`shared.bigquery.query` returns rows only; the reconciler, the validator and the operator tools
need `total_bytes_processed` and DML row counts too, with the same retry policy.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.cloud import bigquery

from shared import bigquery as bq
from shared.clients import emulated
from shared.identifiers import quote_bigquery

_EMULATOR_RETRY = gretry.Retry(timeout=30)
MAX_URIS_PER_LOAD = 10_000  # BigQuery refuses a load job listing more source URIs
AnyJob = bigquery.LoadJob | bigquery.QueryJob | bigquery.CopyJob | bigquery.ExtractJob | bigquery.job.UnknownJob


@dataclass
class JobStats:
    """Totals over the jobs one piece of work ran (bytes as BigQuery reports them; the local
    emulator reports 0)."""

    jobs: int = 0
    bytes_processed: int = 0
    dml_rows: int = 0
    job_ids: list[str] = field(default_factory=list)

    def add(self, job: bigquery.QueryJob | bigquery.table.RowIterator) -> None:
        """Counts a finished job, or the rows of a jobs.query (a query BigQuery ran without a job, as
        JOB_CREATION_OPTIONAL allows, has a query id instead of a job id)."""
        self.jobs += 1
        self.bytes_processed += int(job.total_bytes_processed or 0)
        self.dml_rows += int(job.num_dml_affected_rows or 0)
        job_id = job.job_id or getattr(job, "query_id", None)
        if job_id:
            self.job_ids.append(job_id)


Params = bq.Params


def run(project: str, sql: str, params: Params = (), stats: JobStats | None = None) -> list[bigquery.Row]:
    """Runs one query or script, waits, adds its numbers to `stats` and returns its rows."""
    return list(rows(project, sql, params, stats))


def rows(project: str, sql: str, params: Params = (), stats: JobStats | None = None) -> Iterator[bigquery.Row]:
    """Runs one query, waits, adds its numbers to `stats`, then yields its rows a page at a time
    (BigQuery's pages of at most about 10 MB), so a result of any size is never held whole."""
    result = bq.query_results(project, sql, params, retry=_retry())  # one jobs.query; see there for retries
    if stats is not None:
        stats.add(result)
    yield from result


def find(project: str, job_id: str, location: str | None) -> AnyJob | None:
    """The job of that id, in whatever state it is, or None if BigQuery never ran one."""
    try:
        return bq.client(project).get_job(job_id, project=project, location=location, retry=_retry())
    except gexc.NotFound:
        return None


def _start_load(uris: Sequence[str], table_id: str, job_config: bigquery.LoadJobConfig, *, job_id: str,
               location: str | None) -> AnyJob:
    """Starts a load job under `job_id`. If BigQuery already has a job of that id (another delivery
    started it), that job is returned instead: one id, one load, however often this is called.
    The emulator does not enforce job ids (it runs a duplicate again), so callers look up first."""
    project = table_id.split(".")[0]
    return _once(project, job_id, location, lambda: bq.client(project).load_table_from_uri(
        list(uris), table_id, job_id=job_id, location=location, job_config=job_config, retry=_retry()))


def load_uris(uris: Sequence[str], table_id: str, job_config: bigquery.LoadJobConfig, *, job_id: str,
              location: str | None) -> AnyJob:
    """Loads `uris` into the existing `table_id` and waits; the job under `job_id` is the one that
    filled it, for a later call to find. Past BigQuery's 10,000 URIs a load job, each batch loads into
    a table of its own (`job_config` must truncate) under a job id derived from `job_id`, and one
    query under `job_id` inserts their union, after which they are dropped. A repeated call after a
    crash finds each batch's finished job instead of loading it twice."""
    if len(uris) <= MAX_URIS_PER_LOAD:
        job = _start_load(uris, table_id, job_config, job_id=job_id, location=location)
        job.result()
        return job
    batches = [f"{table_id}_b{number:04d}" for number in range(-(-len(uris) // MAX_URIS_PER_LOAD))]
    for number, batch_table in enumerate(batches):
        listed = uris[number * MAX_URIS_PER_LOAD:(number + 1) * MAX_URIS_PER_LOAD]
        _start_load(listed, batch_table, job_config, job_id=f"{job_id}_b{number:04d}", location=location).result()
    union = " UNION ALL ".join(f"SELECT * FROM {quote_bigquery(*t.split('.'))}" for t in batches)
    project, insert = table_id.split(".")[0], f"INSERT INTO {quote_bigquery(*table_id.split('.'))} {union}"
    job = _once(project, job_id, location, lambda: bq.client(project).query(
        insert, job_id=job_id, location=location, retry=_retry(), job_retry=None))
    job.result()
    for batch_table in batches:
        bq.drop_table(batch_table)
    return job


def _once(project: str, job_id: str, location: str | None, start: Callable[[], AnyJob]) -> AnyJob:
    """The job `start` starts under `job_id`, or the one of that id another call already started."""
    try:
        return start()
    except gexc.Conflict:
        existing = find(project, job_id, location)
        if existing is None:
            raise
        return existing


def _retry() -> gretry.Retry:
    return _EMULATOR_RETRY if emulated() else bigquery.DEFAULT_RETRY
