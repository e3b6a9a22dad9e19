"""Applying one snapshot to its BigQuery table, exactly once in effect."""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared import gcs, ledger, logs
from shared.identifiers import quote_bigquery
from shared.loader.merge_sql import LoadValues, load_script
from shared.manifest import Manifest, ManifestError
from shared.topology import STAGING_DATASET_SUFFIX

log = logs.get(__name__)
STAGING_TTL = dt.timedelta(hours=6)


class SchemaChangeError(ManifestError):
    """The snapshot's schema cannot be applied to the existing table without losing data."""


@dataclass(frozen=True)
class LoadOutcome:
    status: str
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0


def check_parts(manifest: Manifest) -> None:
    """Every part exists with the size and MD5 the manifest promises (metadata only)."""
    for part in manifest.parts:
        stored = gcs.info(part.uri)
        if stored is None:
            raise ManifestError(f"part {part.uri} is missing")
        if stored.md5 != part.md5 or stored.size != part.bytes:
            raise ManifestError(f"part {part.uri} does not match its checksum (md5 {stored.md5}, expected {part.md5})")


def _job_token(manifest: Manifest) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{manifest.target.dataset}_{manifest.target.table}_{manifest.run_id}")


def ensure_target(manifest: Manifest) -> None:
    """Creates dataset and table on first sight; adds new columns; refuses breaking changes."""
    target = manifest.target
    bq.ensure_dataset(target.project, target.dataset)
    ledger.ensure(target.project, target.dataset)
    wanted = bq.table_fields(manifest.table_schema)
    existing = bq.get_table(target.table_id)
    if existing is None:
        bq.create_table(target.table_id, wanted, clustering=[c.bq_name for c in manifest.table_schema.key_columns])
        return
    have = {f.name.lower(): f for f in existing.schema}
    added = []
    for field in wanted:
        current = have.get(field.name.lower())
        if current is None:
            added.append(field)
        elif current.field_type.upper() not in _compatible(field.field_type):
            raise SchemaChangeError(
                f"column {field.name} is {current.field_type} in {target.table_id} but {field.field_type} in the snapshot"
            )
    if added:
        for field in added:
            bq.query(target.project, f"ALTER TABLE {quote_bigquery(*target.table_id.split('.'))} "
                                      f"ADD COLUMN IF NOT EXISTS {quote_bigquery(field.name)} {field.field_type}")
        table = bq.client(target.project).get_table(target.table_id)
        missing = [f for f in added if f.name.lower() not in {s.name.lower() for s in table.schema}]
        if missing:
            table.schema = list(table.schema) + missing
            bq.client(target.project).update_table(table, ["schema"])
        log.warning("added column(s) %s to %s", [f.name for f in added], target.table_id)


def _compatible(bq_type: str) -> set[str]:
    aliases = {"INT64": {"INT64", "INTEGER"}, "FLOAT64": {"FLOAT64", "FLOAT"}, "BOOL": {"BOOL", "BOOLEAN"},
               "NUMERIC": {"NUMERIC", "BIGNUMERIC"}}
    return aliases.get(bq_type.upper(), {bq_type.upper()})


def stage(manifest: Manifest) -> str:
    """Loads the parts into a staging table by a load job whose id derives from the snapshot, so a
    retried function finds the job it already started instead of loading twice."""
    target = manifest.target
    staging_dataset = target.dataset + STAGING_DATASET_SUFFIX
    bq.ensure_dataset(target.project, staging_dataset, default_table_expiration=STAGING_TTL)
    staging_id = f"{target.project}.{staging_dataset}.{_job_token(manifest)}"
    fields = bq.table_fields(manifest.table_schema)
    bq.create_table(staging_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, schema=fields,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    client = bq.client(target.project)
    job_id = f"matrix_stage_{_job_token(manifest)}"
    uris = [p.uri for p in manifest.parts]
    if not uris:
        return staging_id
    try:
        job = client.load_table_from_uri(uris, staging_id, job_id=job_id, job_config=job_config)
    except gexc.Conflict:
        job = client.get_job(job_id)
    job.result()
    return staging_id


def merge(manifest: Manifest, staging_id: str, manifest_uri: str) -> LoadOutcome:
    target = manifest.target
    values = LoadValues(
        table_id=target.table_id, source_table=manifest.source_table, run_id=manifest.run_id,
        sequence=manifest.sequence, mode=manifest.mode, manifest_uri=manifest_uri, source_rows=manifest.row_count,
        bytes=sum(p.bytes for p in manifest.parts), extracted_at=manifest.extracted_at,
    )
    script = load_script(
        manifest.table_schema,
        target=quote_bigquery(*target.table_id.split(".")),
        staging=quote_bigquery(*staging_id.split(".")),
        ledger=ledger.quoted(target.project, target.dataset),
        values=values,
    )
    rows = bq.query(target.project, script)
    status = rows[-1]["outcome"] if rows else ledger.APPLIED
    if status != ledger.APPLIED:
        return LoadOutcome(status)
    row = ledger.applied_run(target.project, target.dataset, target.table_id, manifest.run_id) or {}
    return LoadOutcome(status, int(row.get("rows_inserted") or 0), int(row.get("rows_updated") or 0),
                       int(row.get("rows_deleted") or 0))


def apply_snapshot(manifest: Manifest, manifest_uri: str) -> LoadOutcome:
    started = time.monotonic()
    target = manifest.target
    check_parts(manifest)
    ensure_target(manifest)
    if ledger.applied_run(target.project, target.dataset, target.table_id, manifest.run_id):
        return LoadOutcome(ledger.DUPLICATE)
    staging_id = stage(manifest)
    try:
        outcome = merge(manifest, staging_id, manifest_uri)
    finally:
        bq.drop_table(staging_id)
    return LoadOutcome(outcome.status, outcome.rows_inserted, outcome.rows_updated, outcome.rows_deleted,
                       round(time.monotonic() - started, 3))

