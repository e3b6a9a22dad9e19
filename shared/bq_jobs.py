"""BigQuery queries that also report what they cost, for the replication certificate.

`shared.bigquery.query` returns rows only; the reconciler, the validator and the operator tools
need `total_bytes_processed` and DML row counts too, with the same retry policy.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from google.api_core import retry as gretry
from google.cloud import bigquery

from shared import bigquery as bq
from shared.clients import emulated

_EMULATOR_RETRY = gretry.Retry(timeout=30)


@dataclass
class JobStats:
    """Totals over the jobs one piece of work ran (bytes as BigQuery reports them; the local
    emulator reports 0)."""

    jobs: int = 0
    bytes_processed: int = 0
    dml_rows: int = 0
    job_ids: list[str] = field(default_factory=list)

    def add(self, job: bigquery.QueryJob) -> None:
        self.jobs += 1
        self.bytes_processed += int(job.total_bytes_processed or 0)
        self.dml_rows += int(job.num_dml_affected_rows or 0)
        if job.job_id:
            self.job_ids.append(job.job_id)


def run(project: str, sql: str, params: Sequence[bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter] = (),
        stats: JobStats | None = None) -> list[bigquery.Row]:
    """Runs one query or script, waits, adds its numbers to `stats` and returns its rows."""
    retry = _EMULATOR_RETRY if emulated() else bigquery.DEFAULT_RETRY
    job = bq.client(project).query(
        sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)), retry=retry,
        job_retry=None if emulated() else bigquery.DEFAULT_JOB_RETRY,  # type: ignore[attr-defined]
    )
    rows = list(job.result(retry=retry))
    if stats is not None:
        stats.add(job)
    return rows
