"""What is published stays within Pub/Sub's limits, which the emulator does not check: an alert whose
reason is longer than an attribute may be still arrives whole in its body, and a repair request for
more keys than one message holds asks for a full snapshot instead."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from matrix_sync.stack import LocalStack
from shared.alerts import raise_alert
from shared.clients import subscriber
from shared.manifest import Fingerprint, HashSpec, Manifest, Target
from shared.pubsub import MAX_ATTRIBUTE_KEY_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_MESSAGE_BYTES
from shared.reconciler import reconcile
from shared.reconciler.certificate import Certificate
from shared.schema import Column, TableSchema
from shared.topology import ALERTS_TOPIC, EXTRACT_REQUESTS_TOPIC
from tests.support_reconcile import pull_json, pull_subscription

pytestmark = [pytest.mark.stack]


def _project(stack: LocalStack, unique_name: str) -> str:
    project = f"proj-{unique_name}"
    stack.ensure_resources(bucket=f"bucket-{unique_name}", bigquery_project=project, dataset=f"ds_{unique_name}",
                           pubsub_project=project)
    return project


def test_an_alert_with_a_long_reason_keeps_every_attribute_within_pubsubs_limits(
    stack: LocalStack, unique_name: str
) -> None:
    project = _project(stack, unique_name)
    path = pull_subscription(project, ALERTS_TOPIC, f"alerts-{unique_name}")
    reason = "column(s) " + ", ".join(f"colonne_numéro_{n}" for n in range(120)) + " are not in the snapshot"
    details = {f"extra_{n}": n for n in range(120)}

    raise_alert(project, stage="loader", table="p.d.wide", run_id="r1", reason=reason, details=details)

    (received,) = subscriber().pull(subscription=path, max_messages=5, timeout=30).received_messages
    attributes = dict(received.message.attributes)
    assert len(attributes) <= MAX_ATTRIBUTES
    assert all(len(k.encode()) <= MAX_ATTRIBUTE_KEY_BYTES and len(v.encode()) <= MAX_ATTRIBUTE_VALUE_BYTES
               for k, v in attributes.items())
    assert (attributes["stage"], attributes["table"], attributes["run_id"]) == ("loader", "p.d.wide", "r1")
    body = json.loads(received.message.data)
    assert body["reason"] == reason and body["extra_119"] == 119


def _manifest(project: str) -> Manifest:
    columns = [Column(name="code", bq_name="code", source_type="nvarchar(max)", bq_type="STRING")]
    return Manifest(
        format_version=1, run_id="20261125T101010000001Z-aaaaaa", source_table="dbo.Documents",
        target=Target(project=project, dataset="d", table="documents", pubsub_project=project), mode="full",
        sequence=1, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
        schema=TableSchema(columns=columns, key=["code"]), hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[], row_count=0, fingerprint=Fingerprint(count=0, xor60=0, sum32=0))


@pytest.mark.parametrize(("keys", "full"), [(3, False), (600, True)])
def test_a_repair_request_too_large_for_one_message_asks_for_a_full_snapshot(
    stack: LocalStack, unique_name: str, keys: int, full: bool
) -> None:
    """Keys of 20,000 characters each: 3 fit in a message, 600 (12 MB) do not."""
    project = _project(stack, unique_name)
    path = pull_subscription(project, EXTRACT_REQUESTS_TOPIC, f"requests-{unique_name}")
    manifest = _manifest(project)
    certificate = Certificate(table_id=manifest.target.table_id, run_id=manifest.run_id)
    wanted = [[f"{n:05d}" + "k" * 20_000] for n in range(keys)]

    reconcile._request(manifest, certificate, keys=wanted, reason="reconciliation: missing")

    body = pull_json(path, lambda b: b.get("run_id") == manifest.run_id)
    assert len(json.dumps(body).encode()) < MAX_MESSAGE_BYTES
    assert (body.get("full", False), certificate.full_snapshot_requested) == (full, full)
    assert body.get("keys") == (None if full else wanted)
    if full:
        assert "600 keys are more than one Pub/Sub message holds" in body["reason"]
