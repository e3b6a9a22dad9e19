"""`matrix-sync reconcile` over all of a config's tables when one table's state is broken: its BigQuery
table dropped, or the manifest of its last applied snapshot unreadable. Each broken table is one line
naming it, the reason and what to do (which mends it); the other tables are still reconciled, and the
command exits 1."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import gcs
from tests.e2e.test_cli import matrix_sync
from tests.support import sample_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_a_broken_table_is_one_line_and_the_others_are_reconciled(stack: LocalStack, tmp_path: Path,
                                                                  unique_name: str) -> None:
    path = tmp_path / "config.yaml"
    config = sample_config(stack, path, seed=12, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_id"],
                                   "payments": ["account_id", "payment_no"]})
    extracted = extract_all(config)
    reports = wait_for_chain(config, extracted, timeout_s=180)
    assert all(r.ok for r in reports), reports
    bq.drop_table(table_id(config, "customers"))
    manifest_uri = next(r.manifest_uri for r in extracted if r.table == "accounts")
    bucket, name = gcs.split_uri(manifest_uri)
    gcs.upload(bucket, name, b"garbage" * 10, "application/json")

    result = matrix_sync("reconcile", "--config", str(path), stack=stack, cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr  # a line each, its stack trace in the log file only
    assert (f"customers: not reconciled, the BigQuery table {table_id(config, 'customers')} does not exist: the "
            "next cycle re-creates and reloads it (matrix-sync run --table customers)"
            ) in lines, result.stderr
    unreadable = [line for line in lines if line.startswith("accounts: not reconciled, ")]
    assert len(unreadable) == 1, result.stderr
    assert f"the manifest of its last applied snapshot {manifest_uri} cannot be read (" in unreadable[0]
    assert "not JSON" in unreadable[0]
    assert unreadable[0].endswith("run a full cycle (matrix-sync extract --full --table accounts, then let it load)")
    assert "payments" in result.stdout and "match" in result.stdout, result.stdout  # reconciled all the same

    # what the lines say to do mends both tables
    full = config.model_copy(update={"extract": config.extract.model_copy(update={"mode": "full"})})
    mended = wait_for_chain(full, extract_all(full, tables=["accounts", "customers"]), timeout_s=120)
    assert all(r.ok for r in mended), mended
    again = matrix_sync("reconcile", "--config", str(path), stack=stack, cwd=tmp_path)
    assert again.returncode == 0 and "not reconciled" not in again.stderr, again.stdout + again.stderr

