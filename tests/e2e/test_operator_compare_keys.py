"""`compare-keys` against differences planted in BigQuery behind the pipeline's back: a deleted row,
an added row, a value edited without touching the hash columns, a key whose case changed, a key
with a trailing space and a tampered hash column; `--stored-hashes` finds all but the value edited
behind the hashes, and reports a table holding a row written without hashes as not compared, as it
does a table not loaded yet (the other tables still are); `--repair` then makes BigQuery equal the
source."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from matrix_sync import compare_bigquery
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import compare_keys
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from tests.support import assert_tables_equal, sample_config, write_config
from tests.support_reconcile import execute, table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _lines(output: str) -> list[str]:
    return [" ".join(line.replace("│", " ").split()) for line in output.splitlines()]


def test_compare_keys_finds_every_planted_difference_and_repair_fixes_them(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=31, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_no"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    reports = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert all(r.reconciliation == "match" for r in reports), reports
    runner = CliRunner()
    clean = runner.invoke(compare_keys, ["--config", str(config_path)])
    assert clean.exit_code == 0, clean.output
    # a table not loaded yet is reported as not compared; the others still are
    write_config(tmp_path / "more.yaml", url=config.source.url, suffix=unique_name,
                 tables={"customers": ["customer_id"], "accounts": ["account_no"], "payments": ["payment_no"]})
    partly = runner.invoke(compare_keys, ["--config", str(tmp_path / "more.yaml")])
    assert partly.exit_code == 1, partly.output
    missing = f"{config.bigquery.project}.{config.bigquery.dataset}.payments does not exist: run a cycle first"
    assert f"payments: not compared, {missing}" in partly.output
    assert any(line.startswith("customers 20 20 0 0 0 0 0") for line in _lines(partly.output)), partly.output
    # any other failure of one table (here the emulator's answer outlasting the request timeout) is
    # named with its reason, and the other tables are still compared
    build = compare_bigquery.build_hash_table

    def stalls_on_customers(*args: Any) -> Any:
        if args[2].endswith(".customers"):
            raise requests.exceptions.ReadTimeout("HTTPConnectionPool(host='127.0.0.1'): Read timed out.")
        return build(*args)

    monkeypatch.setattr(compare_bigquery, "build_hash_table", stalls_on_customers)
    stalled = runner.invoke(compare_keys, ["--config", str(config_path)])
    monkeypatch.setattr(compare_bigquery, "build_hash_table", build)
    assert stalled.exit_code == 1, stalled.output
    stalled_line = "customers: not compared, ReadTimeout: HTTPConnectionPool(host='127.0.0.1'): Read timed out."
    assert stalled_line in stalled.output
    assert any(line.startswith("accounts") for line in _lines(stalled.output)), stalled.output

    execute(config, "DELETE FROM {t:customers} WHERE customer_id = 3")
    execute(config, "INSERT INTO {t:customers} SELECT * REPLACE (9999 AS customer_id) FROM {t:customers} "
                    "WHERE customer_id = 4")
    execute(config, "UPDATE {t:customers} SET email = 'edited@example.com' WHERE customer_id = 5")
    execute(config, "UPDATE {t:customers} SET _row_hash = '00000000000000000000000000000000' WHERE customer_id = 6")
    execute(config, "UPDATE {t:accounts} SET account_no = LOWER(account_no) WHERE account_no = 'MX-00000002'")
    execute(config, "UPDATE {t:accounts} SET account_no = CONCAT(account_no, ' ') WHERE account_no = 'MX-00000004'")

    unwritable = runner.invoke(compare_keys, ["--config", str(config_path), "--keys-file",
                                              str(config_path / "keys.csv")])
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.output, unwritable.output
    keys_file = tmp_path / "out" / "differing-keys.csv"
    found = runner.invoke(compare_keys, ["--config", str(config_path), "--keys-file", str(keys_file)])
    assert found.exit_code == 1, found.output
    assert "8 differing key(s) written to" in found.output
    with keys_file.open(newline="", encoding="utf-8") as stream:
        written = [(r["table"], r["kind"], json.loads(r["key_values"])) for r in csv.DictReader(stream)]
    assert len(written) == 8
    assert ("customers", "missing", {"customer_id": "3"}) in written
    assert ("accounts", "extra", {"account_no": "MX-00000004 "}) in written
    lines = _lines(found.output)
    expected = [
        "missing customer_id=3", "extra customer_id=9999", "changed customer_id=5 data edited in BigQuery",
        "stale-hash customer_id=6", "missing account_no='MX-00000002'", "extra account_no='mx-00000002'",
        "missing account_no='MX-00000004'", "extra account_no='MX-00000004 '",
    ]
    for wanted in expected:
        assert any(line.startswith(wanted) for line in lines), (wanted, found.output)
    assert any(line.startswith("customers 20 20 1 1 1 0 1") for line in lines), found.output
    assert any(line.startswith("accounts") and " 2 2 0 0 0 " in line for line in lines), found.output

    # The stored hash columns alone see what changed them: blind to the value and the keys edited
    # behind their hashes (customer 5, both accounts), and the row copied under a new key still
    # carries customer 4's key hash, so it shows as a duplicate of 4.
    quick = runner.invoke(compare_keys, ["--config", str(config_path), "--stored-hashes"])
    assert quick.exit_code == 1, quick.output
    quick_lines = _lines(quick.output)
    for wanted in ["missing customer_id=3", "duplicate customer_id=4", "changed customer_id=6"]:
        assert any(line.startswith(wanted) for line in quick_lines), (wanted, quick.output)
    assert not any("customer_id=5" in line or "account_no=" in line for line in quick_lines), quick.output
    assert any(line.startswith("customers 20 20 1 0 1 1 0") for line in quick_lines), quick.output
    assert any(line.startswith("accounts") and " 0 0 0 0 0 " in line for line in quick_lines), quick.output
    refused = runner.invoke(compare_keys, ["--config", str(config_path), "--stored-hashes", "--repair"])
    assert refused.exit_code == 2 and "drop --stored-hashes" in refused.output

    # a hand-written INSERT leaves the hash columns NULL: nothing stored to compare (it used to end in
    # a traceback); the rebuilding comparison finds the row by its key and the repair deletes it
    execute(config, "INSERT INTO {t:customers} (customer_id, email) VALUES (8888, 'by-hand@example.com')")
    unhashed = runner.invoke(compare_keys, ["--config", str(config_path), "--stored-hashes"])
    assert unhashed.exit_code == 1, unhashed.output
    assert "customers: not compared" in unhashed.output and "1 row(s) hold no hash in _key_hash" in unhashed.output
    assert "without --stored-hashes" in unhashed.output
    assert any(line.startswith("accounts") for line in _lines(unhashed.output)), unhashed.output

    repaired = runner.invoke(compare_keys, ["--config", str(config_path), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: BigQuery equals the source" in repaired.output
    assert_tables_equal(config)
    ledger = bq.query(config.bigquery.project, f"SELECT table_id, rows_deleted FROM "
                                               f"`{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger` "
                                               "WHERE status = 'operator-delete' ORDER BY table_id")
    assert [(r["table_id"], r["rows_deleted"]) for r in ledger] == [
        (table_id(config, "accounts"), 2), (table_id(config, "customers"), 2)]
    # the hashes to delete went to BigQuery as tables of their own, dropped with the hash tables
    staging = f"{config.bigquery.project}.{config.bigquery.dataset}_staging"
    assert [t.table_id for t in bq.client(config.bigquery.project).list_tables(staging)
            if t.table_id.startswith("compare_")] == []
