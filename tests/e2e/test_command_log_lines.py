"""What a command writes to stderr and to its log file: each failure once on stderr, as a line a person
reads (its stack trace in the log file only), and one log line for every change an operator makes,
labelled with the table and the run it belongs to."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from matrix_sync import compare_bigquery, sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import operator_cli
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from tests.e2e.test_cli import matrix_sync
from tests.support import ensure_resources, sample_config, write_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

LABELS = "logging.googleapis.com/labels"


def _log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_compare_keys_names_each_failed_table_once_with_its_trace_in_the_log_file_only(
        stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=51, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_no"]})
    wait_for_chain(config, extract_all(config), timeout_s=120)
    write_config(tmp_path / "typo.yaml", url=config.source.url, suffix=unique_name,
                 tables={"customers": ["customer_id"], "custmers": ["customer_id"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    log_file = tmp_path / "log.jsonl"

    typo = CliRunner().invoke(operator_cli, ["--log-file", str(log_file), "compare-keys", "--config",
                                             str(tmp_path / "typo.yaml")])

    assert typo.exit_code == 1, typo.output
    assert _stderr_lines(typo.stderr) == ["custmers: not compared, table 'custmers' not found in the source; "
                                          "did you mean 'custmers' -> 'customers'?"], typo.stderr

    build = compare_bigquery.build_hash_table

    def fails_on_accounts(*args: Any) -> Any:
        if args[2].endswith(".accounts"):
            raise RuntimeError("an unforeseen failure\nwith a second line")
        return build(*args)

    monkeypatch.setattr(compare_bigquery, "build_hash_table", fails_on_accounts)
    failing = CliRunner().invoke(operator_cli, ["--log-file", str(log_file), "compare-keys", "--config",
                                                str(config_path)])

    assert failing.exit_code == 1, failing.output
    assert _stderr_lines(failing.stderr) == ["accounts: not compared, RuntimeError: an unforeseen failure "
                                             "(the stack trace is in the log file)"], failing.stderr
    [logged] = [line for line in _log_lines(log_file) if line["message"] == "comparing accounts failed"]
    assert logged["severity"] == "ERROR" and "RuntimeError: an unforeseen failure" in logged["stack_trace"]


def test_run_tells_a_table_that_failed_once_and_in_words(stack: LocalStack, tmp_path: Path,
                                                          unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=52)
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE accounts")
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "customers": ["customer_id"]}, suffix=unique_name)
    ensure_resources(stack, config)
    log_file = tmp_path / "log.jsonl"
    reason = "table 'accounts' not found in the source"

    cycle = matrix_sync("--log-file", str(log_file), "run", "--config", str(tmp_path / "config.yaml"), stack=stack,
                        cwd=tmp_path)

    assert cycle.returncode == 1, cycle.stdout + cycle.stderr
    said = _stderr_lines(cycle.stderr)
    told = [line for line in said if reason in line]
    assert len(told) == 1 and told[0].startswith(f"accounts: not extracted, {reason}"), cycle.stderr
    assert not [line for line in said if line.startswith("{")], cycle.stderr
    assert [line["severity"] for line in _log_lines(log_file) if reason in line["message"]] == ["ERROR"]


def test_delete_and_truncate_leave_a_log_line_naming_table_entry_and_rows_but_no_values(
        stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=53, suffix=unique_name,
                           tables={"customers": ["customer_id"], "payments": ["account_id", "payment_no"]})
    wait_for_chain(config, extract_all(config), timeout_s=120)
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    log_file = tmp_path / "log.jsonl"
    payments = bq.query(config.bigquery.project, f"SELECT COUNT(*) AS n FROM `{table_id(config, 'payments')}`")[0]["n"]

    def operator(*args: str) -> None:
        result = CliRunner().invoke(operator_cli, ["--log-file", str(log_file), *args, "--config", str(config_path),
                                                   "--yes"])
        assert result.exit_code == 0, result.output

    operator("delete", "--table", "customers", "--key", "customer_id=17")
    operator("truncate", "--table", "payments")

    entries = {str(row["table_id"]): str(row["run_id"]) for row in bq.query(config.bigquery.project, (
        f"SELECT table_id, run_id FROM `{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger` "
        "WHERE status LIKE 'operator-%'"))}
    logged = [line for line in _log_lines(log_file) if line[LABELS].get("run_id", "").startswith("operator-")]
    assert [(line["severity"], line[LABELS]["table"], line[LABELS]["run_id"]) for line in logged] == [
        ("INFO", table_id(config, "customers"), entries[table_id(config, "customers")]),
        ("INFO", table_id(config, "payments"), entries[table_id(config, "payments")])]
    deleted, truncated = logged
    assert deleted["message"] == (f"delete: 1 row(s) removed from {table_id(config, 'customers')} where "
                                  "`customer_id` = @k0")
    assert "17" not in json.dumps(deleted["fields"]) and deleted["fields"]["rows"] == 1
    assert truncated["message"] == f"truncate: {payments:,} row(s) removed from {table_id(config, 'payments')}, every row"


def test_reconcile_labels_its_verdict_line_with_the_run_it_checked(stack: LocalStack, tmp_path: Path,
                                                                   unique_name: str) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=54, suffix=unique_name, tables={"customers": ["customer_id"]})
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    log_file = tmp_path / "log.jsonl"

    reconciled = matrix_sync("--log-file", str(log_file), "reconcile", "--config", str(config_path), stack=stack,
                             cwd=tmp_path)

    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    [verdict] = [line for line in _log_lines(log_file) if line["message"].startswith("reconciliation (")]
    assert verdict[LABELS]["table"] == table_id(config, "customers")
    assert verdict[LABELS].get("run_id") == report.run_id, verdict
