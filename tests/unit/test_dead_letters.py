"""Dead letters sent again: each goes back to the topic its subscription read, names what it was
about, belongs to the deployment whose bucket or dataset it names, and reaches only the function
it was dead-lettered by (table-loaded feeds the reconciler and the validator)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging

import pytest
from cloudevents.http import CloudEvent

from matrix_sync.dead_letters import DeadLetter, DeadLetterError, source_topic
from shared.events import REPLAY_FOR_ATTRIBUTE
from shared.reconciler.handler import handle_table_loaded as reconciler_handles
from shared.topology import GCS_NOTIFICATIONS_TOPIC, RECONCILE_REQUESTS_TOPIC, TABLE_LOADED_TOPIC
from shared.validator.handler import handle_table_loaded as validator_handles

LOADED = {"table": "proj.ds.orders", "run_id": "20261207T120000Z-ab12", "manifest_uri": "gs://b/snapshots/orders/x"}


def letter(function: str, body: dict[str, object] | None = None, **attributes: str) -> DeadLetter:
    return DeadLetter("proj", function, "7", "ack-7", json.dumps(body or {}).encode(), attributes,
                      dt.datetime(2026, 12, 7, tzinfo=dt.UTC))


def test_each_goes_back_to_the_topic_its_subscription_read() -> None:
    sent_by = "CloudPubSubDeadLetterSourceSubscription"
    assert source_topic(letter("loader", **{sent_by: "loader-push"})) == GCS_NOTIFICATIONS_TOPIC
    assert source_topic(letter("validator", **{sent_by: "validator-push"})) == TABLE_LOADED_TOPIC
    assert source_topic(letter("reconciler", **{sent_by: "reconciler-requests-push"})) == RECONCILE_REQUESTS_TOPIC
    assert source_topic(letter("reconciler")) == TABLE_LOADED_TOPIC  # no attribute: the function's trigger
    with pytest.raises(DeadLetterError, match="subscription stranger-push, which is not one of this deployment's"):
        source_topic(letter("loader", **{sent_by: "stranger-push"}))


def test_it_names_what_it_was_about_and_whose_it_is() -> None:
    notification = letter("loader", bucketId="snapshots-b", objectId="snap/shots/orders/20261207T1200Z-1/_manifest.json")
    assert notification.describe() == "table=orders run_id=20261207T1200Z-1"
    assert notification.belongs_to(root="gs://snapshots-b/snap/shots", project="proj", dataset="ds")
    assert not notification.belongs_to(root="gs://other-b/snap/shots", project="proj", dataset="ds")
    part = letter("loader", bucketId="snapshots-b", objectId="snapshots/orders/run/part-00000.parquet")
    assert part.describe() == "object=snapshots/orders/run/part-00000.parquet"

    loaded = letter("validator", LOADED, table="proj.ds.orders")
    assert loaded.describe() == "table=proj.ds.orders run_id=20261207T120000Z-ab12"
    assert loaded.belongs_to(root="gs://b/snapshots", project="proj", dataset="ds")
    request = letter("reconciler", {"request": "reconcile", "project": "proj", "dataset": "ds", "tables": []})
    assert request.belongs_to(root="gs://b/snapshots", project="proj", dataset="ds")
    assert not request.belongs_to(root="gs://b/snapshots", project="other", dataset="ds")
    extract = letter("extractor", {"tables": ["orders", "customers"]})
    assert extract.describe() == "tables=orders,customers"
    assert extract.belongs_to(root="gs://b/snapshots", project="proj", dataset="ds")  # names no place: anyone's


def test_a_loader_letter_is_a_deployments_when_its_object_is_under_the_deployments_prefix() -> None:
    """Two deployments may share a bucket under different prefixes: the bucket alone told them apart wrongly."""
    theirs = letter("loader", bucketId="shared", objectId="dep-b/customers/20261207T1200Z-1/_manifest.json")
    assert theirs.belongs_to(root="gs://shared/dep-b", project="proj", dataset="ds")
    assert theirs.belongs_to(root="gs://shared/dep-b/", project="proj", dataset="ds")
    assert not theirs.belongs_to(root="gs://shared/dep-a", project="proj", dataset="ds")
    assert not theirs.belongs_to(root="gs://shared/dep", project="proj", dataset="ds")  # a prefix of the name, not a folder
    default = letter("loader", bucketId="shared", objectId="snapshots/customers/r/_manifest.json")
    assert default.belongs_to(root="gs://shared", project="proj", dataset="ds")  # no prefix: the default one


def test_a_table_loaded_letter_is_the_deployments_its_manifest_lives_under() -> None:
    """Deployments sharing a dataset: only the manifest URI tells their table-loaded letters apart."""
    body = LOADED | {"manifest_uri": "gs://shared/dep-b/customers/20261207T120000Z-ab12/_manifest.json"}
    for function in ("reconciler", "validator"):
        theirs = letter(function, body, table="proj.ds.customers")
        assert theirs.belongs_to(root="gs://shared/dep-b", project="proj", dataset="ds")
        assert not theirs.belongs_to(root="gs://shared/dep-a", project="proj", dataset="ds")
    without_uri = letter("validator", {"table": "proj.ds.orders", "run_id": "r"}, table="proj.ds.orders")
    assert without_uri.belongs_to(root="gs://any/where", project="proj", dataset="ds")  # the dataset decides
    assert not without_uri.belongs_to(root="gs://any/where", project="proj", dataset="ds2")


def test_an_extract_request_letter_naming_a_deployment_is_that_deployments() -> None:
    request = letter("extractor", {"tables": ["orders"], "deployment": "gs://shared/dep-b/"})
    assert request.belongs_to(root="gs://shared/dep-b", project="proj", dataset="ds")
    assert not request.belongs_to(root="gs://shared/dep-a", project="proj", dataset="ds")


def test_it_is_sent_again_without_pubsubs_marks_and_for_its_function_only() -> None:
    dead = letter("validator", LOADED, table="proj.ds.orders", CloudPubSubDeadLetterSourceDeliveryCount="5",
                  CloudPubSubDeadLetterSourceSubscription="validator-push")
    assert dead.attributes_to_send() == {"table": "proj.ds.orders", REPLAY_FOR_ATTRIBUTE: "validator"}


def replayed_for(function: str) -> CloudEvent:
    data = base64.b64encode(json.dumps(LOADED).encode()).decode()
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "9"},
                      {"message": {"data": data, "attributes": {REPLAY_FOR_ATTRIBUTE: function}, "messageId": "9"}})


def test_the_other_subscriber_of_table_loaded_ignores_a_replay_not_meant_for_it(caplog: pytest.LogCaptureFixture) -> None:
    # Both return before reaching BigQuery or GCS (there is neither here): had they gone on, the
    # manifest read would fail.
    caplog.set_level(logging.INFO)
    assert reconciler_handles(replayed_for("validator")) is None
    assert validator_handles(replayed_for("reconciler")) is None
    assert caplog.text.count("ignored a dead letter sent again for another function") == 2
