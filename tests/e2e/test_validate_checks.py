"""The validator through the real chain: a quarantined source row fails its check and raises an
alert; values planted in BigQuery that break the source's constraints fail exactly their checks;
thresholds turn failures into passes (or a warning)."""
from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest
from google.cloud import bigquery

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.applied import latest_snapshot
from shared.topology import ALERTS_TOPIC, VALIDATION_TABLE
from shared.validator.checks import run_checks
from shared.validator.thresholds import Thresholds
from tests.support import write_config
from tests.support_reconcile import execute, pull_json, pull_subscription, republish_loaded, table_id, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _add_column(config, table: str, name: str) -> None:  # type: ignore[no-untyped-def]
    full_id = table_id(config, table)
    bq.query(config.bigquery.project, f"ALTER TABLE `{full_id}` ADD COLUMN {name} STRING")
    current = bq.client(config.bigquery.project).get_table(full_id)
    if name not in {f.name for f in current.schema}:  # the emulator reports DDL columns only after this
        current.schema = [*current.schema, bigquery.SchemaField(name, "STRING")]
        bq.client(config.bigquery.project).update_table(current, ["schema"])


def test_validator_checks_fail_and_pass_as_the_data_says(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=51)
    with sqlite3.connect(database) as connection:  # too large for NUMERIC: the extractor quarantines it
        connection.execute("UPDATE customers SET credit_limit = 1e40 WHERE customer_id = 2")
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"customers": ["customer_id"]}, suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, "alerts-validate-test")
    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=120)
    assert (report.validation, report.failed_checks, report.reconciliation) == ("failed", ["quarantined_rows"], "match")
    alert = pull_json(alerts, lambda body: body.get("stage") == "validator")
    assert alert["failed"] == [{"check": "quarantined_rows", "observed": "1", "expected": "at most 0"}]
    first = wait_for_rows(config, VALIDATION_TABLE, extracted.run_id, 1)
    names = {r["check_name"] for r in first}
    assert names >= {"row_count", "key_unique", "schema_drift", "freshness", "max_length:email", "decimal:credit_limit"}
    assert "range:created_at" not in names  # SQLite holds any date in a DATETIME: only thresholds bound it

    # behind the pipeline's back: values no source row could hold
    execute(config, "UPDATE {t:customers} SET full_name = NULL WHERE customer_id = 4")
    execute(config, "UPDATE {t:customers} SET email = REPEAT('x', 400) WHERE customer_id = 5")
    execute(config, "UPDATE {t:customers} SET credit_limit = 123456789012.5 WHERE customer_id = 6")
    execute(config, "UPDATE {t:customers} SET created_at = DATETIME '1700-01-01 00:00:00' WHERE customer_id = 7")
    execute(config, "INSERT INTO {t:customers} SELECT * FROM {t:customers} WHERE customer_id = 8")
    _add_column(config, "customers", "added_by_hand")
    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri)
    rows = wait_for_rows(config, VALIDATION_TABLE, extracted.run_id, 2 * len(first))
    latest = max(r["checked_at"] for r in rows)
    failed = sorted(r["check_name"] for r in rows if r["checked_at"] == latest and not r["passed"])
    assert failed == ["decimal:credit_limit", "key_unique", "max_length:email", "not_null:full_name",
                      "quarantined_rows", "row_count", "schema_drift"]

    # thresholds: tolerated counts pass, extra columns become a warning, a short freshness fails
    time.sleep(2)
    manifest = latest_snapshot(config.bigquery.project, config.bigquery.dataset,
                               table_id(config, "customers")).manifest  # type: ignore[union-attr]
    lenient = Thresholds(row_count_tolerance=1, max_quarantined_rows=1, allow_extra_columns=True,
                         freshness_max_age_s=1, check_lengths=False, skip=["range:", "decimal:"])
    checks = {c.check_name: c for c in run_checks(manifest, lenient)}
    assert checks["row_count"].passed and checks["quarantined_rows"].passed
    assert checks["schema_drift"].passed and checks["schema_drift"].severity == "warning"
    assert "extra: added_by_hand" in checks["schema_drift"].observed
    assert not checks["freshness"].passed and "since the last load" in checks["freshness"].observed
    assert not any(name.startswith(("max_length:", "range:", "decimal:")) for name in checks)
    bounded = {c.check_name: c for c in run_checks(manifest, Thresholds(date_min=dt.date(1900, 1, 1)))}
    assert not bounded["range:created_at"].passed
    assert bounded["range:created_at"].observed.startswith("1 row(s) outside; seen 1700-01-01")
