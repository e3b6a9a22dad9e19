"""Staging tables: the snapshot's parts loaded as they are, next to the target's dataset.

Each attempt stages into tables of its own (run plus a random suffix), so two deliveries of one
snapshot running at once, or a redelivery after a crash, never read or drop each other's staging.
A crashed attempt's tables expire on their own."""
from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass

from google.cloud import bigquery

from shared import bigquery as bq
from shared.manifest import Manifest, Part
from shared.schema import KEY_HASH_COLUMN
from shared.topology import STAGING_DATASET_SUFFIX

STAGING_TTL = dt.timedelta(hours=6)


@dataclass(frozen=True)
class Staged:
    rows: str                   # project.dataset.table of the new and changed (or all) rows
    deleted: str | None = None  # deleted keys of a delta

    @property
    def tables(self) -> list[str]:
        return [t for t in (self.rows, self.deleted) if t]


def staging_dataset(manifest: Manifest) -> str:
    return manifest.target.dataset + STAGING_DATASET_SUFFIX


def _table_id(manifest: Manifest, what: str, attempt: str) -> str:
    target = manifest.target
    token = re.sub(r"[^A-Za-z0-9_]", "_", f"{target.table}_{manifest.run_id}_{what}_{attempt}")
    return f"{target.project}.{staging_dataset(manifest)}.{token}"


def deleted_key_fields(manifest: Manifest) -> list[bigquery.SchemaField]:
    keys = [bigquery.SchemaField(c.bq_name, c.bq_type) for c in manifest.table_schema.key_columns]
    return keys + [bigquery.SchemaField(KEY_HASH_COLUMN, "STRING")]


def _load(table_id: str, fields: list[bigquery.SchemaField], parts: list[Part]) -> None:
    bq.create_table(table_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    if not parts:
        return
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, schema=fields,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
    )
    # URIs listed one by one: no wildcard, so nothing but the manifest's parts is read.
    job = bq.client(table_id.split(".")[0]).load_table_from_uri([p.uri for p in parts], table_id, job_config=job_config)
    job.result()


def stage(manifest: Manifest) -> Staged:
    target = manifest.target
    bq.ensure_dataset(target.project, staging_dataset(manifest), default_table_expiration=STAGING_TTL)
    attempt = secrets.token_hex(4)
    staged = Staged(_table_id(manifest, "rows", attempt),
                    _table_id(manifest, "deleted", attempt) if manifest.delta is not None else None)
    try:
        _load(staged.rows, bq.table_fields(manifest.table_schema), manifest.parts)
        if manifest.delta is not None and staged.deleted:
            _load(staged.deleted, deleted_key_fields(manifest), manifest.delta.deleted_parts)
    except BaseException:
        drop(staged)
        raise
    return staged


def drop(staged: Staged) -> None:
    for table_id in staged.tables:
        bq.drop_table(table_id)
