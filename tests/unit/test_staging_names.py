"""Staging names derived from the snapshot: the same snapshot always gets the same load job ids and
tables, a different one (other parts, other table) never does, and every name is a valid BigQuery
job id and table name whatever the target is called."""
from __future__ import annotations

import datetime as dt
import re

from shared.loader import staging
from shared.manifest import Fingerprint, HashSpec, Manifest, Part, Target
from shared.schema import Column, TableSchema

RUN = "20261125T101010000001Z-aaaaaa"
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
TABLE_NAME = re.compile(r"^[A-Za-z0-9_]{1,1024}$")


def manifest(table: str = "t", md5: str = "AAAA", rows: int = 3) -> Manifest:
    schema = TableSchema(columns=[Column(name="id", bq_name="id", source_type="int", bq_type="INT64")], key=["id"])
    part = Part(uri=f"gs://b/snapshots/{table}/{RUN}/part-00000.parquet", rows=rows, bytes=10, md5=md5)
    return Manifest(
        format_version=1, run_id=RUN, source_table="dbo.T",
        target=Target(project="p-test", dataset="d", table=table, pubsub_project="p-test"), mode="full", sequence=1,
        extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), schema=schema,
        hash=HashSpec(algorithm="sha256-128", encoding_version=1), parts=[part], row_count=rows,
        fingerprint=Fingerprint(count=rows, xor60=0, sum32=0),
    )


def test_the_same_snapshot_gets_the_same_names_and_attempts_differ() -> None:
    first, again = staging.attempt(manifest(), staging.ROWS, 1), staging.attempt(manifest(), staging.ROWS, 1)
    assert first == again
    second = staging.attempt(manifest(), staging.ROWS, 2)
    assert second.job_id != first.job_id and second.table_id != first.table_id
    assert staging.attempt(manifest(), staging.DELETED, 1).job_id != first.job_id
    assert RUN.replace("-", "_") in first.table_id and first.job_id.startswith(staging.JOB_PREFIX)


def test_other_content_or_another_table_gets_other_names() -> None:
    names = {staging.attempt(m, staging.ROWS, 1).job_id
             for m in (manifest(), manifest(md5="BBBB"), manifest(rows=4), manifest(table="u"))}
    assert len(names) == 4


def test_names_are_valid_job_ids_and_table_names_for_any_target() -> None:
    for table in ("t", "Order-Lines", "x" * 1024):
        current = staging.attempt(manifest(table=table), staging.ROWS, staging.MAX_ATTEMPTS)
        project, dataset, name = current.table_id.split(".")
        assert (project, dataset) == ("p-test", "d" + "_staging")
        assert TABLE_NAME.match(name) and JOB_ID.match(current.job_id), current
        assert len(current.job_id) < 400
