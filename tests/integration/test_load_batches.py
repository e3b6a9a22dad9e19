"""BigQuery refuses a load job listing more than 10,000 source URIs, and a snapshot of a large or
wide table has more parts than that (64 MiB a part: 640 GB; 50,000 rows a part: 500M rows). Past
the limit each batch of URIs loads into a table of its own and one query inserts their union, under
the job id a redelivery looks for. The emulator has no such limit, so the tests lower it."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import bq_jobs
from shared.identifiers import quote_bigquery
from shared.loader import staging
from shared.reconciler import diff
from tests.integration.test_loader_staging_resume import (
    applied_and_published,
    crash_after_staging,
    job,
    staged_rows,
)
from tests.integration.test_loader_support import (
    Place,
    Writer,
    held_notifications,
    ledger,
    log_messages,
    rows_for,
    staging_tables,
    table_rows,
    wait_for,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def two_uris_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """BigQuery's limit, lowered to 2 and enforced in this process as BigQuery enforces it."""
    monkeypatch.setattr(bq_jobs, "MAX_URIS_PER_LOAD", 2)
    load = bigquery.Client.load_table_from_uri

    def limited(client: bigquery.Client, uris: Sequence[str], *args: Any, **kwargs: Any) -> bigquery.LoadJob:
        if len(uris) > 2:
            raise gexc.BadRequest(f"too many source URIs: {len(uris)}")
        return load(client, uris, *args, **kwargs)

    monkeypatch.setattr(bigquery.Client, "load_table_from_uri", limited)


@pytest.mark.usefixtures("two_uris_a_job")
def test_a_snapshot_of_more_parts_than_a_load_job_takes_is_staged_in_batches(
    stack: LocalStack, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "orders", part_rows=4).full(rows_for(5, 19), sequence=1)
    assert len(snapshot.manifest.parts) == 5
    with held_notifications(stack):
        snapshot.publish()
        crash_after_staging(snapshot, monkeypatch)
        first = job(snapshot, staging.ROWS, 1)
        assert first is not None and first.job_type == "query" and first.error_result is None
        rows_table = staging.attempt(snapshot.manifest, staging.ROWS, 1).table_id
        assert staged_rows(rows_table) == 19
        assert [t.table_id for t in staging_tables(place)] == [rows_table.split(".")[2]]  # batches dropped
    wait_for(applied_and_published(snapshot), 60, "the redelivery to apply and publish")
    assert table_rows(place, "orders") == snapshot.rows
    assert [r["status"] for r in ledger(place, snapshot.run_id)] == ["applied"]
    assert job(snapshot, staging.ROWS, 2) is None
    assert any(m.startswith("reusing staging") for m in log_messages(stack, run_id=snapshot.run_id))
    assert staging_tables(place) == []


@pytest.mark.usefixtures("two_uris_a_job")
def test_a_key_index_of_more_parts_than_a_load_job_takes_is_staged_whole(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "payments", part_rows=3)
    snapshot = writer.full(rows_for(6, 14), sequence=1, index=True)
    assert len(snapshot.manifest.index_parts) == 5
    staged = diff.stage_index(snapshot.manifest, "batches")
    try:
        rows = bq.query(place.project, f"SELECT id, _key_hash FROM {quote_bigquery(*staged.split('.'))}")
        assert sorted((r["id"],) for r in rows) == sorted(snapshot.rows)
        assert len({r["_key_hash"] for r in rows}) == 14
        assert [t.table_id for t in staging_tables(place)] == [staged.split(".")[2]]
    finally:
        bq.drop_table(staged)
