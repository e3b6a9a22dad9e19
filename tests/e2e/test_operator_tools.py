"""`status`, `validate`, `delete` and `truncate` on the local stack: tables, exit codes, refusals
without --yes, dry runs, ledger entries, and one-line errors."""
from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.cloud import bigquery

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import delete, operator_cli, status, truncate, validate
from matrix_sync.operator_views import parse_key_filters, status_rows
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import pubsub
from shared.config import Config
from shared.topology import TABLE_LOADED_TOPIC
from tests.support import assert_tables_equal, sample_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _count(config, table: str) -> int:  # type: ignore[no-untyped-def]
    return bq.query(config.bigquery.project, f"SELECT COUNT(*) AS n FROM `{table_id(config, table)}`")[0]["n"]


def test_operator_tools_report_refuse_act_and_record(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=41, suffix=unique_name,
                           tables={"customers": ["customer_id"], "payments": ["account_id", "payment_no"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    runner = CliRunner()
    args = ["--config", str(config_path)]

    never = runner.invoke(status, args)
    assert never.exit_code == 1 and "never" in never.output and "needs attention: customers, payments" in never.output

    wait_for_chain(config, extract_all(config), timeout_s=120)
    healthy = runner.invoke(status, args)
    assert healthy.exit_code == 0, healthy.output
    assert "applied" in healthy.output and "match" in healthy.output and "passed" in healthy.output
    checked = runner.invoke(validate, args)
    assert checked.exit_code == 0, checked.output
    assert "decimal:amount" in checked.output and "freshness" in checked.output and "FAILED" not in checked.output

    key = ["--table", "customers", "--key", "customer_id=3"]
    refused = runner.invoke(delete, [*args, *key])
    assert refused.exit_code == 2 and "refusing to delete 1 row(s)" in refused.output
    dry = runner.invoke(delete, [*args, *key, "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 row(s)" in dry.output and _count(config, "customers") == 20
    done = runner.invoke(delete, [*args, *key, "--yes"])
    assert done.exit_code == 0, done.output
    assert _count(config, "customers") == 19

    failing = runner.invoke(validate, [*args, "--record"])
    assert failing.exit_code == 1 and "failed: customers" in failing.output
    assert "row_count" in failing.output and "FAILED" in failing.output
    attention = runner.invoke(status, args)
    assert attention.exit_code == 1 and "failed: row_count" in attention.output
    assert "operator-delete" in attention.output

    assert runner.invoke(truncate, [*args, "--table", "payments"]).exit_code == 2
    payments = _count(config, "payments")
    emptied = runner.invoke(truncate, [*args, "--table", "payments", "--yes"])
    assert emptied.exit_code == 0, emptied.output
    assert _count(config, "payments") == 0
    truncated = runner.invoke(status, args)  # the last checks predate the truncate: they no longer hold
    assert truncated.exit_code == 1 and "needs attention: customers, payments" in truncated.output
    rows = {name: row for name, row in status_rows(config, dt.datetime.now(dt.UTC))[0]}
    shown = {name: row[5:] for name, row in rows.items()}
    assert [shown["customers"][1:], shown["payments"][1:]] == [("outdated: match", "failed: row_count"),
                                                               ("outdated: match", "outdated: passed")]
    assert shown["payments"][0].startswith("operator-truncate (")
    # the rows column tells what the table holds now beside its snapshot's count
    assert (rows["customers"][3], rows["payments"][3]) == ("19 (snapshot 20)", f"0 (snapshot {payments:,})")
    nothing = runner.invoke(delete, [*args, "--table", "customers", "--key", "customer_id=424242", "--yes"])
    assert nothing.exit_code == 0 and "nothing was removed" in nothing.output
    ledger = bq.query(config.bigquery.project, (
        f"SELECT table_id, status, rows_deleted, message FROM "
        f"`{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger` "
        "WHERE status LIKE 'operator-%' ORDER BY table_id"))
    assert [(r["table_id"], r["status"], r["rows_deleted"]) for r in ledger] == [
        (table_id(config, "customers"), "operator-delete", 1), (table_id(config, "payments"), "operator-truncate", payments)]
    assert ledger[0]["message"].startswith("delete: `customer_id` = @k0 (@k0 = 3) (by ")  # which row went

    for bad, message in [
        (["--table", "customers", "--key", "nope=1", "--yes"], "expected COLUMN=VALUE"),
        (["--table", "customers", "--key", "nope=1", "--yes"], "(its columns: customer_id, "),
        (["--table", "customers", "--key", "customer_id=2_0", "--yes"], "'2_0' is not a valid INT64 value"),
        (["--table", "customers", "--key", "customer_id=\u0662\u0660", "--yes"], "is not a valid INT64 value"),
        (["--table", "customers", "--key", "customer_id=abc", "--yes"], "is not a valid INT64 value"),
        (["--table", "customers", "--key", "customer_id=9223372036854775808", "--yes"], "is not a valid INT64 value"),
        (["--table", "customers", "--where", "TRUE; DROP TABLE x", "--yes"], "without ';'"),
        (["--table", "customers", "--where", "customer_id = 1) OR (TRUE", "--yes"], "closes a parenthesis"),
        (["--table", "nowhere", "--key", "a=1"], "table 'nowhere' is not in the config"),
    ]:
        result = runner.invoke(delete, [*args, *bad])
        assert result.exit_code == 2 and message in result.output, (bad, result.output)

    # the next cycle brings back what the source still holds
    reports = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert all(r.ok for r in reports), reports
    assert_tables_equal(config)

    # a late, repeated `table-loaded` of an older run: its `superseded` verdicts do not hide the newest run's
    _redeliver_oldest_table_loaded(config, "customers")
    late = runner.invoke(status, args)
    assert late.exit_code == 0 and "pending" not in late.output, late.output

    # a validation lost for the newest run (a delivery dead-lettered): the last run's checks do not stand in
    bq.query(config.bigquery.project, f"DELETE FROM `{config.bigquery.project}.{config.bigquery.dataset}."
                                      f"_sync_validations` WHERE run_id = '{reports[1].run_id}'")
    lost = runner.invoke(status, args)
    assert lost.exit_code == 1 and "needs attention: payments" in lost.output, lost.output
    shown = {name: row[6:] for name, row in status_rows(config, dt.datetime.now(dt.UTC))[0]}
    assert shown == {"customers": ("match", "passed"), "payments": ("match", "pending")}


def _redeliver_oldest_table_loaded(config: Config, table: str) -> None:
    """Publishes the table's first applied run's `table-loaded` again, as a late redelivery would, and
    waits for the reconciler's and validator's `superseded` verdicts on it."""
    project, dataset = config.bigquery.project, config.bigquery.dataset
    oldest = bq.query(project, f"SELECT * FROM `{project}.{dataset}._sync_ledger` WHERE status = 'applied' "
                               f"AND table_id = '{table_id(config, table)}' ORDER BY sequence LIMIT 1")[0]
    pubsub.publish_json(config.pubsub.project, TABLE_LOADED_TOPIC, {
        "table": oldest["table_id"], "source_table": oldest["source_table"], "run_id": oldest["run_id"],
        "sequence": oldest["sequence"], "mode": oldest["mode"], "manifest_uri": oldest["manifest_uri"],
        "status": "applied", "rows_inserted": oldest["rows_inserted"], "rows_updated": oldest["rows_updated"],
        "rows_deleted": oldest["rows_deleted"], "source_rows": oldest["source_rows"]}, ordering_key=oldest["table_id"])

    def superseded() -> bool:
        found = [bq.query(project, f"SELECT COUNT(*) AS n FROM `{project}.{dataset}.{results_table}` "
                                   f"WHERE run_id = '{oldest['run_id']}' AND {column} = 'superseded'")[0]["n"]
                 for results_table, column in (("_sync_reconciliations", "verdict"), ("_sync_validations", "check_name"))]
        return all(found)

    deadline = time.monotonic() + 60
    while not superseded():
        assert time.monotonic() < deadline, "no superseded verdicts for the redelivered run"
        time.sleep(0.5)


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.yaml").write_text("source: {url: 'sqlite:///x.db'}\n")
    monkeypatch.setenv("MATRIX_STACK_DIR", str(tmp_path / "none"))
    result = CliRunner().invoke(operator_cli, ["--log-file", str(tmp_path / "log.jsonl"), "status",
                                               "--config", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "pubsub: Field required" in result.stderr and str(tmp_path / "bad.yaml") in result.stderr


def test_deleting_from_a_table_never_loaded_is_one_line(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=42, suffix=unique_name, tables={"customers": ["customer_id"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    args = ["--config", str(config_path), "--table", "customers", "--yes"]
    for command, extra in ((truncate, []), (delete, ["--where", "TRUE"]), (delete, ["--key", "customer_id=1"])):
        result = CliRunner().invoke(command, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert f"{table_id(config, 'customers')} does not exist" in result.output
        assert "404" not in result.output


def test_a_key_may_name_the_source_column(stack: LocalStack, unique_name: str) -> None:
    project, dataset = f"proj-{unique_name}", f"ds_{unique_name}"
    bq.ensure_dataset(project, dataset)
    table = f"{project}.{dataset}.orders"
    bq.create_table(table, [bigquery.SchemaField("Order_x0020_Date", "DATE"), bigquery.SchemaField("id", "INT64")])
    condition, params = parse_key_filters(table, ("Order Date=2024-02-29", "ID=7"))
    assert condition == "`Order_x0020_Date` = @k0 AND `id` = @k1"
    assert [p.value for p in params] == [dt.date(2024, 2, 29), 7]


def test_status_flags_a_table_whose_extraction_failed_or_that_went_stale(
        stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither reaches the ledger: a failed extraction writes no manifest, and the validator checks
    freshness only when a load arrives."""
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=43, suffix=unique_name,
                           tables={"customers": ["customer_id"], "payments": ["account_id", "payment_no"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    args = ["--config", str(config_path)]
    reports = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert all(r.ok for r in reports), reports
    healthy = CliRunner().invoke(status, args)
    assert healthy.exit_code == 0 and "extracted (" in healthy.output, healthy.output

    with sqlite3.connect(tmp_path / "matrix.db") as db:
        db.execute("ALTER TABLE payments RENAME TO payments_archive")
    assert extract_all(config, tables=["payments"]) == []
    failed = CliRunner().invoke(status, args)
    assert failed.exit_code == 1 and "needs attention: payments" in failed.output, failed.output
    shown = {name: row for name, row in status_rows(config, dt.datetime.now(dt.UTC))[0]}
    assert shown["payments"][4].startswith("failed (") and "not found" in shown["payments"][4]
    assert shown["customers"][4].startswith("extracted (")

    monkeypatch.setenv("MATRIX_VALIDATION", '{"tables": {"customers": {"freshness_max_age_s": 1}}}')
    time.sleep(1.5)
    stale = CliRunner().invoke(status, args)
    assert stale.exit_code == 1 and "needs attention: customers, payments" in stale.output, stale.output
    shown = {name: row for name, row in status_rows(config, dt.datetime.now(dt.UTC))[0]}
    assert shown["customers"][2].endswith("(stale)") and not shown["payments"][2].endswith("(stale)")
