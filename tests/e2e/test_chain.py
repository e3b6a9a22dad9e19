"""The whole chain on the local stack: extractor -> GCS -> notification -> loader -> MERGE ->
table-loaded -> reconciler and validator, through real push deliveries, over several cycles."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from tests.support import assert_tables_equal, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_several_change_cycles_keep_bigquery_equal_to_the_source(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=11)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables=sample.TABLE_KEYS,
                          suffix=unique_name, chunk_rows=40)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)

    expected_changes: dict[str, sample.TableChanges] | None = None
    for cycle in range(3):
        extracted = extract_all(config)
        reports = wait_for_chain(config, extracted, timeout_s=180)
        for report in reports:
            assert report.load_status == "applied", report
            assert report.reconciliation == "match", report
            assert report.validation == "passed", report
            if expected_changes is None:
                assert report.rows_inserted == report.source_rows
                assert report.rows_updated == report.rows_deleted == 0
            else:
                change = expected_changes[report.table]
                assert (report.rows_inserted, report.rows_updated, report.rows_deleted) == (
                    change.inserted, change.updated, change.deleted), report.table
        assert_tables_equal(config)
        expected_changes = sample.mutate(database, 0.2, seed=100 + cycle)

    ledger = bq.query(config.bigquery.project,
                      f"SELECT status, COUNT(*) AS n FROM `{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger` "
                      "GROUP BY status")
    assert {row["status"]: row["n"] for row in ledger} == {"applied": 3 * len(config.tables)}
