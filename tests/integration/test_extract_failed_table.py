"""A table that cannot be snapshotted fails alone: the extractor function and the agent
(run_request) write the other tables and report it; nothing of it reaches GCS. A table whose
definition fails raises an alert; one that fails otherwise (a driver's error, a dropped connection)
gets the request delivered again: the function raises once the other tables are written."""
from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

from matrix_sync.stack import LocalStack
from shared.clients import storage_client
from shared.config import Config
from shared.events import Message
from shared.extractor import run as extractor_run
from shared.extractor.handler import CONFIG_VARIABLE, ExtractionIncomplete, handle_extract_request, run_request
from shared.extractor.run import FailedTable
from shared.topology import ALERTS_TOPIC, MANIFEST_NAME
from tests.support import sample_config
from tests.support_reconcile import pull_json, pull_subscription

pytestmark = pytest.mark.stack


def _tables_with_a_manifest(config: Config) -> list[str]:
    return [blob.name.split("/")[1] for blob in storage_client().list_blobs(config.gcs.bucket)
            if blob.name.endswith(MANIFEST_NAME)]


def test_the_request_writes_the_other_tables_and_alerts_on_the_failed_one(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    config = sample_config(stack, tmp_path / "c.yaml", seed=8, suffix=unique_name,
                           tables={"customers": ["email"], "accounts": ["account_id"]})
    with sqlite3.connect(tmp_path / "matrix.db") as connection:
        connection.execute("ALTER TABLE customers DROP COLUMN email")
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, f"alerts-{unique_name}")

    outcome = run_request(config, Message(data={}, attributes={}, message_id="1"))

    reason = ("table 'customers': no key column(s) ['email']; columns are ['customer_id', 'full_name', "
              "'birth_date', 'is_active', 'created_at', 'credit_limit']")
    assert outcome.failed == [FailedTable("customers", reason)]
    assert [r.table for r in outcome.written] == ["accounts"] and outcome.locked == []
    alert = pull_json(alerts, lambda body: body.get("stage") == "extractor")
    assert (alert["table"], alert["reason"]) == ("customers", reason)
    assert _tables_with_a_manifest(config) == [config.table("accounts").target_table]


def test_an_unexpected_error_fails_its_table_and_the_request_is_delivered_again(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "c.yaml"
    config = sample_config(stack, config_path, seed=9, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_id"]})
    real_extract_table = extractor_run.extract_table

    def refused_by_the_driver(config, engine, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        if source.config.name == "customers":  # listed first: the table after it must still be written
            raise sqlite3.OperationalError("database is locked\nby another process")
        return real_extract_table(config, engine, source, *args, **kwargs)

    monkeypatch.setattr(extractor_run, "extract_table", refused_by_the_driver)
    monkeypatch.setenv(CONFIG_VARIABLE, str(config_path))
    body = base64.b64encode(json.dumps({}).encode()).decode()
    event = CloudEvent({"id": "7", "type": "google.cloud.pubsub.topic.v1.messagePublished",
                        "source": "//pubsub.googleapis.com/test"}, {"message": {"data": body, "messageId": "7"}})

    with pytest.raises(ExtractionIncomplete, match="customers: not extracted, OperationalError: database is locked$"):
        handle_extract_request(event)

    assert _tables_with_a_manifest(config) == [config.table("accounts").target_table]
    outcome = run_request(config, Message(data={"tables": ["customers"]}, attributes={}, message_id="8"))
    assert outcome.failed == [FailedTable("customers", "OperationalError: database is locked", unexpected=True)]


def test_ctrl_c_turned_into_a_library_error_stops_the_run(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB answers Ctrl-C with RuntimeError("Query interrupted") raised from the KeyboardInterrupt:
    that used to fail the one table and go on with the next."""
    config = sample_config(stack, tmp_path / "c.yaml", seed=10, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_id"]})

    def interrupted(config, engine, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("Query interrupted") from interrupt

    monkeypatch.setattr(extractor_run, "extract_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extractor_run.extract(config)
    assert _tables_with_a_manifest(config) == []
