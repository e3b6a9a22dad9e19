"""A column or a whole table dropped from BigQuery behind the pipeline's back: the validator function
records `schema_drift` failed (the other checks still run, those of the gone column skipped, saying
why), alerts and acknowledges; `matrix-sync validate` names every broken table and still checks the
others, even when one of them fails unexpectedly."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from matrix_sync import operator_views
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import validate
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config
from shared.topology import ALERTS_TOPIC, VALIDATION_TABLE
from tests.support import sample_config
from tests.support_reconcile import pull_json, pull_subscription, republish_loaded, table_id, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _drop_column(config: Config, table: str, column: str) -> None:
    """Rewrites the table without `column`, and makes the emulator's reported schema say so too."""
    full_id = table_id(config, table)
    kept = [f.name for f in bq.client(config.bigquery.project).get_table(full_id).schema if f.name != column]
    bq.query(config.bigquery.project, f"CREATE OR REPLACE TABLE `{full_id}` AS "
                                      f"SELECT {', '.join(f'`{n}`' for n in kept)} FROM `{full_id}`")
    current = bq.client(config.bigquery.project).get_table(full_id)
    if column in {f.name for f in current.schema}:  # the emulator may report the schema it had before
        current.schema = [f for f in current.schema if f.name != column]
        bq.client(config.bigquery.project).update_table(current, ["schema"])


def test_a_dropped_column_is_reported_recorded_and_alerted_by_the_function(
        stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    config = sample_config(stack, tmp_path / "config.yaml", seed=61, suffix=unique_name,
                           tables={"customers": ["customer_id"]})
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, f"alerts-gone-{unique_name}")
    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=120)
    assert report.validation == "passed"
    first = wait_for_rows(config, VALIDATION_TABLE, extracted.run_id, 1)

    _drop_column(config, "customers", "full_name")  # NOT NULL in the source: it has a not_null check
    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri)
    rows = wait_for_rows(config, VALIDATION_TABLE, extracted.run_id, 2 * len(first))
    latest = {r["check_name"]: r for r in rows if r["checked_at"] == max(r["checked_at"] for r in rows)}
    assert latest.keys() == {r["check_name"] for r in first}
    assert [name for name, r in latest.items() if not r["passed"]] == ["schema_drift"]
    assert latest["schema_drift"]["observed"] == "missing: full_name"
    assert latest["not_null:full_name"]["observed"] == "skipped: column full_name missing in BigQuery"
    assert latest["row_count"]["passed"] and latest["row_count"]["observed"] == latest["row_count"]["expected"]
    alert = pull_json(alerts, lambda body: body.get("stage") == "validator")
    assert alert["failed"] == [{"check": "schema_drift", "observed": "missing: full_name",
                                "expected": "the snapshot's columns and types"}]


def test_validate_names_each_broken_table_and_checks_the_others(
        stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=62, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_id"],
                                   "payments": ["account_id", "payment_no"]})
    wait_for_chain(config, extract_all(config), timeout_s=120)
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    runner = CliRunner()
    args = ["--config", str(config_path), "--record"]

    _drop_column(config, "customers", "full_name")
    bq.drop_table(table_id(config, "accounts"))
    result = runner.invoke(validate, args)
    assert result.exit_code == 1, result.output
    assert "failed: customers, accounts" in result.output
    assert "missing: full_name" in result.output and "table does not exist" in result.output
    assert "skipped: column full_name missing in" in result.output  # the console wraps the rest
    assert "skipped: table missing in BigQuery" in result.output

    # an unexpected error in one table is named; the tables after it are still validated
    real = operator_views.run_checks

    def broken_for_accounts(manifest, *rest, **options):  # type: ignore[no-untyped-def]
        if manifest.target.table.startswith("accounts"):
            raise RuntimeError("the validator broke")
        return real(manifest, *rest, **options)

    monkeypatch.setattr(operator_views, "run_checks", broken_for_accounts)
    result = runner.invoke(validate, ["--config", str(config_path)])
    assert result.exit_code == 1, result.output
    assert "error: RuntimeError: the validator broke" in result.output
    assert "failed: customers, accounts" in result.output  # payments, after accounts, was validated and passed
    payments = [line for line in result.output.splitlines() if "payments" in line and "passed" in line]
    assert any("row_count" in line for line in payments) and any("schema_drift" in line for line in payments)
