"""Deep reconciliation on a schedule, through the local stack: the request Cloud Scheduler publishes
to `reconcile-requests` reaches the reconciler by push, is fanned out per table, and a value edited
directly in BigQuery without touching the hash columns is caught, its hash re-stamped and its key
requested again; the on-prem agent serves the request and the next certificates are clean."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.agent import ensure_subscription, serve
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared.config import Config
from shared.extractor.run import Extraction
from shared.pubsub import publish_json
from shared.reconciler.request import new_request
from shared.topology import ALERTS_TOPIC, EXTRACT_REQUESTS_TOPIC, RECONCILE_REQUESTS_TOPIC, RECONCILIATION_TABLE
from tests.integration.test_loader_support import wait_for
from tests.support import assert_tables_equal, write_config
from tests.support_reconcile import execute, pull_json, pull_subscription, table_id, wait_for_rows

pytestmark = [pytest.mark.stack]


def scheduled_request(config: Config, tables: list[str]) -> None:
    """The body infra/scheduler.tf's deep-reconcile job publishes (tests/infra checks they agree)."""
    request = new_request(project=config.bigquery.project, dataset=config.bigquery.dataset,
                          pubsub_project=config.pubsub.project, tables=tables, deep=True, requested_by="schedule")
    publish_json(config.pubsub.project, RECONCILE_REQUESTS_TOPIC, request.body())


def serve_one_request(config: Config) -> Extraction:
    served: list[Extraction] = []
    wait_for(lambda: serve(config, once=True, idle_timeout_s=None, on_results=served.append), 60,
             "the agent to receive the repair request")
    return served[0]


def test_a_scheduled_deep_check_catches_and_repairs_an_edit_that_left_the_hashes(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=21)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"customers": ["customer_id"], "accounts": ["account_id"]}, suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    extracted = {r.table: r for r in extract_all(config)}
    reports = wait_for_chain(config, list(extracted.values()), timeout_s=120)
    assert all((r.load_status, r.reconciliation) == ("applied", "match") for r in reports), reports
    ensure_subscription(config)  # the agent's subscription exists before any repair request is published
    requests = pull_subscription(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, "extract-requests-deep-test")
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, "alerts-deep-test")

    # a person edits a value in BigQuery; the hash columns still describe the old value
    execute(config, "UPDATE {t:customers} SET email = 'edited.by.hand@example.com' WHERE customer_id = 5")

    scheduled_request(config, [])  # every table
    customers = wait_for_rows(config, RECONCILIATION_TABLE, extracted["customers"].run_id, 2)[-1]
    accounts = wait_for_rows(config, RECONCILIATION_TABLE, extracted["accounts"].run_id, 2)[-1]
    assert (accounts["mode"], accounts["verdict"]) == ("deep", "match")
    assert (customers["mode"], customers["verdict"]) == ("deep", "mismatch")
    assert (customers["stale_hash_rows"], customers["changed_rows"], customers["missing_rows"],
            customers["extra_rows"]) == (1, 1, 0, 0)
    assert (customers["rows_restamped"], customers["keys_requested"], customers["rows_deleted"]) == (1, 1, 0)
    assert '"requested_by": "schedule"' in str(customers["details"])
    request = pull_json(requests, lambda body: body.get("run_id") == extracted["customers"].run_id)
    assert request["keys"] == [[5]] and request["target"] == table_id(config, "customers")

    # the on-prem agent serves the repair request; the load it ships rewrites the edited row
    repaired = serve_one_request(config)
    (report,) = wait_for_chain(config, repaired.written, timeout_s=120)
    assert (report.table, report.reconciliation, report.rows_updated) == ("customers", "match", 1), report
    assert_tables_equal(config)

    # the next scheduled deep check of the table is clean; a name it cannot check is alerted
    scheduled_request(config, ["customers", "no_such_table"])
    deep = wait_for_rows(config, RECONCILIATION_TABLE, report.run_id, 2)[-1]
    assert (deep["mode"], deep["verdict"], deep["stale_hash_rows"]) == ("deep", "match", 0)
    seen: list[dict[str, object]] = []

    def unknown_table(body: dict[str, object]) -> bool:
        seen.append(body)
        return body.get("table") == "no_such_table"

    alert = pull_json(alerts, unknown_table)
    assert alert["stage"] == "reconciler" and "no applied snapshot" in str(alert["reason"])
    # the repaired mismatch needed no person: it raised no alert
    assert not [b for b in seen if b.get("table") == table_id(config, "customers")]
