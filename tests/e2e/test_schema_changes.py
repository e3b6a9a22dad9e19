"""Source structure changes the loader applies through the whole chain: columns that swap names
(rows hash by position, so the stored hashes cannot tell), and columns an analyst added in BigQuery
(never in a snapshot, so kept rather than taken for columns the source dropped)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from google.cloud import bigquery

from matrix_sync.cycle import TableReport, extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config
from tests.support import assert_tables_equal, ensure_resources, orders_config, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _cycle(config: Config) -> dict[str, TableReport]:
    reports = wait_for_chain(config, extract_all(config), timeout_s=180)
    return {r.table: r for r in reports}


def _ledger_messages(config: Config, table: str) -> list[str | None]:
    project, dataset = config.bigquery.project, config.bigquery.dataset
    rows = bq.query(project, f"SELECT message FROM `{project}.{dataset}._sync_ledger` WHERE status = 'applied' "
                             f"AND table_id = '{project}.{dataset}.{table}' ORDER BY sequence")
    return [r["message"] for r in rows]


def test_columns_that_swap_names_are_rewritten_in_bigquery(stack: LocalStack, tmp_path: Path,
                                                           unique_name: str) -> None:
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE codes (id INTEGER PRIMARY KEY, v TEXT, t TEXT)")
        db.execute("CREATE TABLE events (v TEXT, t TEXT)")  # keyless: matched by row hash alone
        db.executemany("INSERT INTO codes VALUES (?, ?, ?)", [(i, f"v{i}", f"text {i}") for i in range(1, 41)])
        db.executemany("INSERT INTO events VALUES (?, ?)", [(f"v{i % 5}", f"text {i % 5}") for i in range(12)])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"codes": ["id"], "events": []}, suffix=unique_name)
    ensure_resources(stack, config)
    assert {r.load_status for r in _cycle(config).values()} == {"applied"}

    with sqlite3.connect(database) as db:
        for table in ("codes", "events"):
            db.execute(f"ALTER TABLE {table} RENAME COLUMN v TO v_old")
            db.execute(f"ALTER TABLE {table} RENAME COLUMN t TO v")
            db.execute(f"ALTER TABLE {table} RENAME COLUMN v_old TO t")
    swapped = _cycle(config)
    assert swapped["codes"].load_status == "applied" and swapped["codes"].rows_updated == 40
    assert swapped["events"].load_status == "applied"
    assert {(r.reconciliation, r.validation) for r in swapped.values()} == {("match", "passed")}
    assert_tables_equal(config)
    events = bq.query(config.bigquery.project, f"SELECT v, t FROM `{config.bigquery.project}."
                                               f"{config.bigquery.dataset}.events` ORDER BY v, t")
    assert [(r["v"], r["t"]) for r in events] == sorted((f"text {i % 5}", f"v{i % 5}") for i in range(12))
    assert "every row rewritten: the columns changed places" in (_ledger_messages(config, "codes")[-1] or "")

    settled = _cycle(config)  # the ledger now records the new order: nothing is rewritten again
    assert (settled["codes"].rows_updated, _ledger_messages(config, "codes")[-1]) == (0, None)
    assert_tables_equal(config)


def test_a_column_added_in_bigquery_is_kept_and_only_flagged_by_the_validator(
        stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database, config = orders_config(stack, tmp_path, unique_name, rows=20)
    assert _cycle(config)["orders"].load_status == "applied"
    table = f"`{config.bigquery.project}.{config.bigquery.dataset}.orders`"
    bq.add_columns(f"{config.bigquery.project}.{config.bigquery.dataset}.orders",
                   [bigquery.SchemaField("analyst_note", "STRING")])  # DDL, and the emulator's schema
    bq.query(config.bigquery.project, f"UPDATE {table} SET analyst_note = 'checked' WHERE id <= 5")

    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = -1 WHERE id IN (1, 15)")
        db.execute("DELETE FROM orders WHERE id = 2")
        db.execute("INSERT INTO orders VALUES (99, 990)")
    report = _cycle(config)["orders"]
    assert (report.load_status, report.rows_inserted, report.rows_updated, report.rows_deleted) == ("applied", 1, 2, 1)
    assert report.reconciliation == "match"
    assert report.validation == "failed" and report.failed_checks == ["schema_drift"]
    assert_tables_equal(config)
    notes = bq.query(config.bigquery.project, f"SELECT id, analyst_note FROM {table} WHERE analyst_note IS NOT NULL")
    assert sorted(r["id"] for r in notes) == [1, 3, 4, 5]
