"""A table whose definition cannot be snapshotted fails alone: the extractor function and the agent
(run_request) write the other tables, report it and raise an alert; nothing of it reaches GCS."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.stack import LocalStack
from shared.clients import storage_client
from shared.events import Message
from shared.extractor.handler import run_request
from shared.extractor.run import FailedTable
from shared.topology import ALERTS_TOPIC, MANIFEST_NAME
from tests.support import write_config
from tests.support_reconcile import pull_json, pull_subscription

pytestmark = pytest.mark.stack


def test_the_request_writes_the_other_tables_and_alerts_on_the_failed_one(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=8)
    with sqlite3.connect(database) as connection:
        connection.execute("ALTER TABLE customers DROP COLUMN email")
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}",
                          tables={"customers": ["email"], "accounts": ["account_id"]}, suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, f"alerts-{unique_name}")

    outcome = run_request(config, Message(data={}, attributes={}, message_id="1"))

    reason = "table 'customers' has no key column(s) ['email']"
    assert outcome.failed == [FailedTable("customers", reason)]
    assert [r.table for r in outcome.written] == ["accounts"] and outcome.locked == []
    alert = pull_json(alerts, lambda body: body.get("stage") == "extractor")
    assert (alert["table"], alert["reason"]) == ("customers", reason)
    manifests = [blob.name for blob in storage_client().list_blobs(config.gcs.bucket) if blob.name.endswith(MANIFEST_NAME)]
    assert [name.split("/")[1] for name in manifests] == [config.table("accounts").target_table]
