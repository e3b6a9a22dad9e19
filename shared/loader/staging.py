"""Staging tables: the snapshot's parts loaded as they are, next to the target's dataset.

A staging table and the load job that fills it are named after the snapshot (target, run id and a
hash of the parts' URIs and checksums) and an attempt number. A delivery first looks for the job
of attempt 1, 2, ...: a job that succeeded and left exactly the manifest's row count in its table
is reused, so a redelivery after a crash resumes instead of loading twice; a failed job, or a table
holding any other count (half-written, tampered, expired), is dropped and the next attempt loaded.
Each delivery starts at most one new load job per part list (a delta's rows and deleted keys are
staged at the same time). Tables are dropped after the load transaction and expire on their own
(table expiration, and the staging dataset's default) if a crash leaves them.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared import bq_jobs, logs
from shared.identifiers import quote_bigquery
from shared.loader.errors import RefusedError, TransientError
from shared.manifest import Manifest, Part
from shared.schema import KEY_HASH_COLUMN
from shared.topology import STAGING_DATASET_SUFFIX

log = logs.get(__name__)
STAGING_TTL = dt.timedelta(hours=6)
JOB_PREFIX = "matrix_sync_load_"
MAX_ATTEMPTS = 50       # attempts of one snapshot's staging looked at before giving up
_NAME_ROOM = 200        # characters of the target table's name kept in staging names
ROWS, DELETED = "rows", "deleted"


@dataclass(frozen=True)
class Staged:
    rows: str                   # project.dataset.table of the new and changed (or all) rows
    deleted: str | None = None  # deleted keys of a delta

    @property
    def tables(self) -> list[str]:
        return [t for t in (self.rows, self.deleted) if t]


@dataclass(frozen=True)
class Attempt:
    """One try at staging one part list: its table and the load job that fills it."""

    table_id: str
    job_id: str
    number: int


def staging_dataset(manifest: Manifest) -> str:
    return manifest.target.dataset + STAGING_DATASET_SUFFIX


def snapshot_digest(manifest: Manifest) -> str:
    """Changes whenever the snapshot's content does: a rewritten manifest gets staging of its own."""
    content = {"target": manifest.target.table_id, "run_id": manifest.run_id,
               "parts": [[p.uri, p.md5, p.rows] for p in manifest.parts],
               "deleted": [[p.uri, p.md5, p.rows] for p in manifest.delta.deleted_parts] if manifest.delta else None}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def attempt(manifest: Manifest, what: str, number: int) -> Attempt:
    """Valid as a table name and a job id (letters, digits, underscores; well under 1024 characters)."""
    target = manifest.target
    token = re.sub(r"[^A-Za-z0-9_]", "_", f"{target.table[:_NAME_ROOM]}_{manifest.run_id}_{what}_"
                                          f"{snapshot_digest(manifest)}_a{number}")
    return Attempt(f"{target.project}.{staging_dataset(manifest)}.{token}", JOB_PREFIX + token, number)


def deleted_key_fields(manifest: Manifest) -> list[bigquery.SchemaField]:
    keys = [bigquery.SchemaField(c.bq_name, c.bq_type) for c in manifest.table_schema.key_columns]
    return keys + [bigquery.SchemaField(KEY_HASH_COLUMN, "STRING")]


def stage(manifest: Manifest) -> Staged:
    """A delta's rows and deleted keys are staged at the same time (the deleted keys on a thread);
    if either fails, the other's table is dropped too and the first failure raised."""
    target = manifest.target
    dataset = bq.ensure_dataset(target.project, staging_dataset(manifest), default_table_expiration=STAGING_TTL)
    location = dataset.location
    if manifest.delta is None:
        return Staged(_stage_parts(manifest, ROWS, bq.table_fields(manifest.table_schema), manifest.parts, location))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-deleted") as pool:
        # run in a copy of this context, so its log lines carry the event's labels
        deleted = pool.submit(contextvars.copy_context().run, _stage_parts, manifest, DELETED,
                              deleted_key_fields(manifest), manifest.delta.deleted_parts, location)
        try:
            rows = _stage_parts(manifest, ROWS, bq.table_fields(manifest.table_schema), manifest.parts, location)
        except BaseException:
            _drop_sibling(deleted)
            raise
        try:
            return Staged(rows, deleted.result())
        except BaseException:
            bq.drop_table(rows)
            raise


def _drop_sibling(staging_of: Future[str]) -> None:
    """After the other staging failed: waits for this one and drops its table (its own failure is logged)."""
    error = staging_of.exception()
    if error is None:
        bq.drop_table(staging_of.result())
    else:
        log.warning("the other staging of the snapshot failed as well: %s: %s", type(error).__name__, error)


def drop(staged: Staged | None) -> None:
    for table_id in staged.tables if staged else []:
        bq.drop_table(table_id)


def _stage_parts(manifest: Manifest, what: str, fields: list[bigquery.SchemaField], parts: Sequence[Part],
                 location: str | None) -> str:
    expected = sum(p.rows for p in parts)
    if not parts:
        return _empty(attempt(manifest, what, 1), fields)
    for number in range(1, MAX_ATTEMPTS + 1):
        current = attempt(manifest, what, number)
        job = bq_jobs.find(_project(current.table_id), current.job_id, location)
        if job is None:
            return _load(current, fields, parts, expected, location)
        problem = _problem(job, current.table_id, expected)
        if problem is None:
            logs.event(log, f"reusing staging {current.table_id}: load job {current.job_id} left its {expected} rows",
                       staging=current.table_id, job_id=current.job_id, attempt=number, rows=expected)
            return current.table_id
        log.warning("not reusing staging %s (load job %s): %s; staging again", current.table_id, current.job_id,
                    problem)
        bq.drop_table(current.table_id)
    raise TransientError(f"{MAX_ATTEMPTS} staging attempts of {manifest.run_id} ({what}) are used up")


def _project(table_id: str) -> str:
    return table_id.split(".")[0]


def _load(current: Attempt, fields: list[bigquery.SchemaField], parts: Sequence[Part], expected: int,
          location: str | None) -> str:
    """Loads under this attempt's job id. A failed job stays behind for the next delivery to skip."""
    bq.create_table(current.table_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, schema=fields,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    try:
        # URIs listed one by one: no wildcard, so nothing but the manifest's parts is read.
        job = bq_jobs.load_uris([p.uri for p in parts], current.table_id, job_config, job_id=current.job_id,
                                location=location)
    except BaseException:
        bq.drop_table(current.table_id)
        raise
    found = _row_count(current.table_id, _rows_written(job))
    if found is None:  # another delivery, which ran the same job (409), committed and dropped it
        raise TransientError(f"staging {current.table_id} was dropped by another delivery of the snapshot")
    if found != expected:
        bq.drop_table(current.table_id)
        raise RefusedError(f"the parts loaded into {current.table_id} hold {found} rows, the manifest says {expected}")
    log.info("staged %d rows into %s (load job %s)", expected, current.table_id, current.job_id)
    return current.table_id


def _problem(job: bq_jobs.AnyJob, table_id: str, expected: int) -> str | None:
    """Why this job's staging table cannot be used as the snapshot's, or None if it can."""
    try:
        job.result()
    except gexc.GoogleAPICallError as error:
        return f"the load job failed: {str(error).splitlines()[0][:300]}"
    found = _row_count(table_id)
    if found is None:
        return "the staging table is gone"
    if found != expected:
        return f"the staging table holds {found} rows, the parts {expected}"
    return None


def _rows_written(job: bq_jobs.AnyJob) -> int | None:
    """What the job that filled a truncated staging table wrote, from its statistics: no COUNT(*)
    job on the load's path (each job costs a second or so in BigQuery)."""
    if isinstance(job, bigquery.LoadJob):
        return job.output_rows
    if isinstance(job, bigquery.QueryJob):
        return job.num_dml_affected_rows
    return None


def _row_count(table_id: str, written: int | None = None) -> int | None:
    """The rows `table_id` holds (None if it is gone): `written` if given, else counted."""
    if bq.get_table(table_id) is None:
        return None
    if written is not None:
        return written
    rows = bq.query(_project(table_id), f"SELECT COUNT(*) AS n FROM {quote_bigquery(*table_id.split('.'))}")
    return int(rows[0]["n"])


def _empty(current: Attempt, fields: list[bigquery.SchemaField]) -> str:
    """Nothing to load: an empty table is staging enough (one that somehow holds rows is made again)."""
    bq.create_table(current.table_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    if _row_count(current.table_id) != 0:
        bq.drop_table(current.table_id)
        bq.create_table(current.table_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    return current.table_id
