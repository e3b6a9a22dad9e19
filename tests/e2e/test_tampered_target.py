"""A BigQuery table changed behind the pipeline's back is healed by the next full snapshot."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.extractor.run import extract
from tests.e2e.test_cli import matrix_sync
from tests.support import assert_tables_equal, orders_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_a_full_snapshot_replaces_the_rows_of_a_key_the_table_holds_twice(
        stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database, config = orders_config(stack, tmp_path, unique_name, rows=30)
    project, dataset = config.bigquery.project, config.bigquery.dataset
    (first,) = wait_for_chain(config, extract(config, force_full=True).written, timeout_s=120)
    assert first.ok, first
    table = f"`{project}.{dataset}.orders`"
    bq.query(project, f"INSERT INTO {table} (id, amount, _key_hash, _row_hash) "
                      f"SELECT id, amount + 1, _key_hash, _row_hash FROM {table} WHERE id = 7")

    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = -1 WHERE id = 3")
    (healed,) = wait_for_chain(config, extract(config, force_full=True).written, timeout_s=120)
    assert (healed.load_status, healed.reconciliation, healed.validation) == ("applied", "match", "passed"), healed
    assert_tables_equal(config)
    assert bq.query(project, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 30
    ledger = bq.query(project, f"SELECT message, rows_inserted, rows_updated, rows_deleted "
                               f"FROM `{project}.{dataset}._sync_ledger` WHERE run_id = '{healed.run_id}'")
    assert ledger[0]["message"] == "replaced 2 row(s) of keys the table held more than once"
    # counted after both copies of key 7 went: the snapshot's row 7 is an insert, row 3 an update
    assert (ledger[0]["rows_inserted"], ledger[0]["rows_updated"], ledger[0]["rows_deleted"]) == (1, 1, 0)


def test_a_truncate_gets_a_table_past_an_applied_row_of_impossible_sequence(
        stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    """A forged manifest (or a hand-edited ledger) with a huge sequence made every genuine snapshot
    stale, and the documented remedy, truncate and a full cycle, left the table empty for good."""
    database, config = orders_config(stack, tmp_path, unique_name, rows=30)
    project, dataset = config.bigquery.project, config.bigquery.dataset
    (first,) = wait_for_chain(config, extract(config, force_full=True).written, timeout_s=120)
    assert first.ok, first
    ledger_table = f"`{project}.{dataset}._sync_ledger`"
    bq.query(project, f"UPDATE {ledger_table} SET sequence = 9999999999999999 WHERE run_id = '{first.run_id}'")
    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = -1 WHERE id = 3")
    (stuck,) = wait_for_chain(config, extract(config, force_full=True).written, timeout_s=120)
    assert stuck.load_status == "stale", stuck

    truncated = matrix_sync("truncate", "--config", str(tmp_path / "config.yaml"), "--table", "orders", "--yes",
                            stack=stack, cwd=tmp_path)
    assert truncated.returncode == 0, truncated.stdout + truncated.stderr
    (healed,) = wait_for_chain(config, extract(config).written, timeout_s=120)
    assert (healed.mode, healed.load_status, healed.reconciliation) == ("full", "applied", "match"), healed
    assert_tables_equal(config)
