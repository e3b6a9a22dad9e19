"""Staging is named after the snapshot: a redelivery after a crash finds the load job and staging
table the crashed delivery left and reuses them, unless the job failed or the table does not hold
exactly the manifest's rows, in which case they are dropped and the next attempt loads again.

The crashing delivery is an in-process call while the notification is held back in Pub/Sub;
releasing it hands the redelivery to the real loader server through the push chain."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import bq_jobs
from shared.identifiers import quote_bigquery
from shared.loader import faults, staging
from shared.loader.errors import RefusedError
from shared.loader.handler import handle_snapshot_event
from tests.integration.test_loader_support import (
    Place,
    Snapshot,
    Writer,
    held_notifications,
    ledger,
    log_messages,
    rows_for,
    staging_tables,
    storage_event,
    table_rows,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.stack


def job(snapshot: Snapshot, what: str, number: int) -> bq_jobs.AnyJob | None:
    current = staging.attempt(snapshot.manifest, what, number)
    return bq_jobs.find(snapshot.place.project, current.job_id, None)


def crash_after_staging(snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAULT_VARIABLE, faults.AFTER_STAGE)
    with pytest.raises(faults.InjectedFault):
        handle_snapshot_event(storage_event(snapshot.place.bucket, snapshot.manifest_name))
    monkeypatch.delenv(faults.FAULT_VARIABLE)


def applied_and_published(snapshot: Snapshot) -> Callable[[], bool]:
    return lambda: any(r["status"] == "applied" and r["published_at"] for r in ledger(snapshot.place, snapshot.run_id))


def staged_rows(table_id: str) -> int:
    rows = bq.query(table_id.split(".")[0], f"SELECT COUNT(*) AS n FROM {quote_bigquery(*table_id.split('.'))}")
    return int(rows[0]["n"])


@pytest.mark.parametrize("mode", ["full", "delta"])
def test_a_redelivery_after_staging_reuses_the_load_job_and_its_table(
    stack: LocalStack, unique_name: str, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    base = writer.full(rows_for(1, 12), sequence=1)
    base.publish()
    wait_for_status(base, "applied")
    snapshot = (writer.full(rows_for(2, 15, start=4), sequence=2) if mode == "full"
                else writer.delta(base, rows_for(2, 15, start=4), sequence=2))
    kinds = [staging.ROWS, staging.DELETED] if mode == "delta" else [staging.ROWS]
    with held_notifications(stack):
        snapshot.publish()
        crash_after_staging(snapshot, monkeypatch)
        first = {what: job(snapshot, what, 1) for what in kinds}
        assert all(j is not None and j.state == "DONE" and j.error_result is None for j in first.values())
        left = {t.table_id: t for t in staging_tables(place)}
        assert sorted(left) == sorted(staging.attempt(snapshot.manifest, w, 1).table_id.split(".")[2]
                                      for w in kinds)
        rows_table = staging.attempt(snapshot.manifest, staging.ROWS, 1).table_id
        assert staged_rows(rows_table) == sum(p.rows for p in snapshot.manifest.parts)
        assert table_rows(place, "customers") == base.rows
    wait_for(applied_and_published(snapshot), 60, "the redelivery to apply and publish")
    assert table_rows(place, "customers") == snapshot.rows
    assert [r["status"] for r in ledger(place, snapshot.run_id)] == ["applied"]
    for what in kinds:
        again = job(snapshot, what, 1)
        assert again is not None and again.created == first[what].created, f"the {what} load job ran a second time"
        assert job(snapshot, what, 2) is None, f"a second {what} load job was started"
    reused = [m for m in log_messages(stack, run_id=snapshot.run_id) if m.startswith("reusing staging")]
    assert len(reused) == len(kinds)
    assert staging_tables(place) == []  # dropped after the commit


def test_a_staging_table_with_the_wrong_row_count_is_not_reused(stack: LocalStack, unique_name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "orders").full(rows_for(3, 20), sequence=1)
    first = staging.attempt(snapshot.manifest, staging.ROWS, 1)
    with held_notifications(stack):
        snapshot.publish()
        crash_after_staging(snapshot, monkeypatch)
        # half-written: the crashed attempt's table lost rows behind the job's back
        bq.query(place.project, f"DELETE FROM {quote_bigquery(*first.table_id.split('.'))} WHERE id > 12")
        assert staged_rows(first.table_id) == 12
    wait_for(applied_and_published(snapshot), 60, "the redelivery to stage again and apply")
    assert table_rows(place, "orders") == snapshot.rows
    second = job(snapshot, staging.ROWS, 2)
    assert second is not None and second.error_result is None and second.output_rows in (20, None)
    assert job(snapshot, staging.ROWS, 3) is None
    assert any("holds 12 rows, the parts 20" in m for m in log_messages(stack, run_id=snapshot.run_id))
    assert staging_tables(place) == []


def test_a_failed_load_job_is_not_reused(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "payments").full(rows_for(4, 9), sequence=1)
    first = staging.attempt(snapshot.manifest, staging.ROWS, 1)
    # a delivery that died while its load job failed: the job is there under the derived id, in error
    bq.ensure_dataset(place.project, staging.staging_dataset(snapshot.manifest))
    bq.create_table(first.table_id, bq.table_fields(snapshot.manifest.table_schema))
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                    schema=bq.table_fields(snapshot.manifest.table_schema))
    failed = bq.client(place.project).load_table_from_uri([f"gs://{place.bucket}/nothing-here.parquet"],
                                                          first.table_id, job_id=first.job_id, job_config=config)
    with pytest.raises(gexc.GoogleAPICallError):
        failed.result()
    snapshot.publish()
    wait_for(applied_and_published(snapshot), 60, "the delivery to stage again and apply")
    assert table_rows(place, "payments") == snapshot.rows
    again = job(snapshot, staging.ROWS, 1)
    assert again is not None and again.error_result is not None, "the failed job was run again under its own id"
    second = job(snapshot, staging.ROWS, 2)
    assert second is not None and second.error_result is None
    assert any(m.startswith("not reusing staging") and "the load job failed" in m
               for m in log_messages(stack, run_id=snapshot.run_id))
    assert staging_tables(place) == []


def test_parts_holding_other_rows_than_the_manifest_says_are_refused_and_unstaged(
        stack: LocalStack, unique_name: str) -> None:
    """The rows a load job wrote (its statistics, no COUNT job) are checked against the manifest."""
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "invoices").full(rows_for(5, 20), sequence=1)
    (part,) = snapshot.manifest.parts
    claims_more = snapshot.manifest.model_copy(update={"parts": [part.model_copy(update={"rows": 25})]})
    with pytest.raises(RefusedError, match="hold 20 rows, the manifest says 25"):
        staging.stage(claims_more)
    assert staging_tables(place) == []
    assert staged_rows(staging.stage(snapshot.manifest).rows) == 20
