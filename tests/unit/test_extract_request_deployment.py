"""Which deployment an extract request is for: deployments sharing a Pub/Sub project share
`extract-requests` and the agent's `extractor-pull`, so each request names its deployment's
snapshot root, and an extractor or agent of another deployment does not act on it."""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cloudevents.http import CloudEvent

from matrix_sync import agent
from shared.config import Config
from shared.events import Message
from shared.extractor import handler
from shared.extractor.run import Extraction
from shared.manifest import Fingerprint, HashSpec, Manifest, Target
from shared.reconciler.reconcile import repair_request_body
from shared.schema import Column, TableSchema
from shared.topology import manifest_root, normalised_root, same_root, snapshot_root, under_root

RAW_CONFIG: dict[str, Any] = {
    "source": {"url": "sqlite:///x.db"},
    "tables": [{"name": "customers", "key": ["id"]}, {"name": "a_only", "key": ["id"]}],
    "gcs": {"bucket": "shared", "prefix": "dep-a"}, "bigquery": {"project": "p-1", "dataset": "ds"},
    "pubsub": {"project": "p-1"},
}
CONFIG_A = Config.model_validate(RAW_CONFIG)


def test_roots_compare_normalised() -> None:
    assert snapshot_root("shared", "dep-a") == "gs://shared/dep-a"
    assert snapshot_root("shared", "/dep-a/") == "gs://shared/dep-a"
    assert normalised_root("gs://shared") == normalised_root("gs://shared/") == "gs://shared/snapshots"
    assert same_root("gs://shared/dep-a/", "gs://shared/dep-a")
    assert same_root(" gs://shared/a/b// ", "gs://shared/a/b")
    assert not same_root("gs://shared/dep-a", "gs://shared/dep-b")
    assert not same_root("gs://shared/dep-a", "gs://other/dep-a")


def test_an_object_is_under_a_root_only_inside_its_folder() -> None:
    assert under_root("gs://shared/dep-a/customers/r/_manifest.json", "gs://shared/dep-a/")
    assert not under_root("gs://shared/dep-ab/customers/r/_manifest.json", "gs://shared/dep-a")
    assert not under_root("gs://shared/dep-b/customers/r/_manifest.json", "gs://shared/dep-a")
    assert under_root("gs://shared/snapshots/t/r/_manifest.json", "gs://shared")


def test_the_root_of_a_manifest_is_three_levels_up() -> None:
    assert manifest_root("gs://shared/dep-a/customers/20261207T1200Z-1/_manifest.json") == "gs://shared/dep-a"
    assert manifest_root("gs://b/deep/er/prefix/orders/r/_manifest.json") == "gs://b/deep/er/prefix"
    assert manifest_root("gs://b/customers/r/_manifest.json") is None  # no prefix: no deployment of ours
    assert manifest_root("gs://b/dep-a/customers/r/part-00000.parquet") is None
    assert manifest_root("not a uri") is None


def request(data: dict[str, object], **attributes: str) -> Message:
    return Message(data, attributes, "m1")


def test_a_request_names_its_deployment_in_its_body_or_an_attribute() -> None:
    assert handler.requested_root(request({"deployment": "gs://shared/dep-b/"})) == "gs://shared/dep-b"
    assert handler.requested_root(request({}, deployment="gs://shared/dep-b")) == "gs://shared/dep-b"
    assert handler.requested_root(request({"tables": ["customers"]})) is None  # an older publisher's


def test_only_a_request_naming_another_deployment_is_foreign() -> None:
    assert handler.deployment_root(CONFIG_A) == "gs://shared/dep-a"
    assert handler.foreign_root(CONFIG_A, request({"deployment": "gs://shared/dep-b"})) == "gs://shared/dep-b"
    assert handler.foreign_root(CONFIG_A, request({"deployment": "gs://multi-c"})) == "gs://multi-c/snapshots"
    assert handler.foreign_root(CONFIG_A, request({"deployment": "gs://shared/dep-a/"})) is None
    assert handler.foreign_root(CONFIG_A, request({}, deployment="gs://shared/dep-a")) is None
    assert handler.foreign_root(CONFIG_A, request({"table": "customers"})) is None  # names none: handled as before
    default = Config.model_validate({**RAW_CONFIG, "gcs": {"bucket": "shared"}})
    assert handler.foreign_root(default, request({"deployment": "gs://shared"})) is None


class FakeSubscriber:
    def __init__(self) -> None:
        self.deadlines: list[tuple[list[str], int]] = []
        self.acknowledged: list[str] = []

    def modify_ack_deadline(self, *, subscription: str, ack_ids: list[str], ack_deadline_seconds: int) -> None:
        self.deadlines.append((ack_ids, ack_deadline_seconds))

    def acknowledge(self, *, subscription: str, ack_ids: list[str]) -> None:
        self.acknowledged.extend(ack_ids)


def received(body: dict[str, object], message_id: str = "41", **attributes: str) -> SimpleNamespace:
    message = SimpleNamespace(data=json.dumps(body).encode(), attributes=attributes, message_id=message_id)
    return SimpleNamespace(message=message, ack_id=f"ack-{message_id}")


@pytest.fixture
def pubsub(monkeypatch: pytest.MonkeyPatch) -> FakeSubscriber:
    fake = FakeSubscriber()
    monkeypatch.setattr(agent, "subscriber", lambda: fake)
    monkeypatch.setattr(agent, "ensure_subscription", lambda config: "projects/p-1/subscriptions/extractor-pull")
    monkeypatch.setattr(agent.time, "sleep", lambda seconds: None)
    return fake


def serve_pulling(monkeypatch: pytest.MonkeyPatch, pulls: list[SimpleNamespace | None], *, once: bool) -> int:
    queue = list(pulls)
    monkeypatch.setattr(agent, "_pull", lambda path: queue.pop(0) if queue else None)
    return agent.serve(CONFIG_A, once=once, idle_timeout_s=0 if not once else None, on_results=lambda outcome: None)


def test_the_agent_hands_back_another_deployments_request_and_does_not_count_it(
    monkeypatch: pytest.MonkeyPatch, pubsub: FakeSubscriber, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=agent.__name__)
    monkeypatch.setattr(agent, "run_request", lambda config, message: pytest.fail("B's request was run by A"))
    theirs = received({"tables": ["a_only"], "deployment": "gs://shared/dep-b"})

    assert serve_pulling(monkeypatch, [theirs, theirs], once=True) == 0

    assert pubsub.deadlines == [(["ack-41"], 0), (["ack-41"], 0)] and pubsub.acknowledged == []
    handed_back = [r for r in caplog.records if "handed back" in r.getMessage()]
    assert len(handed_back) == 1 and handed_back[0].levelno == logging.INFO
    assert "gs://shared/dep-b" in handed_back[0].getMessage() and "gs://shared/dep-a" in handed_back[0].getMessage()


def test_with_once_the_agent_looks_past_another_deployments_request_for_its_own(
    monkeypatch: pytest.MonkeyPatch, pubsub: FakeSubscriber
) -> None:
    ran: list[Message] = []
    monkeypatch.setattr(agent, "run_request", lambda config, message: ran.append(message) or Extraction())
    theirs = received({"deployment": "gs://shared/dep-b"}, message_id="1")
    ours = received({"tables": ["a_only"], "deployment": "gs://shared/dep-a/"}, message_id="2")

    assert serve_pulling(monkeypatch, [theirs, ours], once=True) == 1

    assert [m.message_id for m in ran] == ["2"] and pubsub.acknowledged == ["ack-2"]
    assert (["ack-1"], 0) in pubsub.deadlines


def test_the_agent_handles_its_own_requests_and_those_naming_no_deployment(
    monkeypatch: pytest.MonkeyPatch, pubsub: FakeSubscriber
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(agent, "run_request", lambda config, message: ran.append(message.message_id) or Extraction())
    pulls = [received({"tables": ["a_only"]}, message_id="old"),
             received({}, message_id="attr", deployment="gs://shared/dep-a"),
             received({"deployment": "gs://multi-c/snapshots"}, message_id="c")]

    assert serve_pulling(monkeypatch, pulls, once=False) == 2

    assert ran == ["old", "attr"] and pubsub.acknowledged == ["ack-old", "ack-attr"]
    assert pubsub.deadlines[-1] == (["ack-c"], 0)


def test_a_request_that_is_not_json_but_names_another_deployment_is_left_for_it(
    monkeypatch: pytest.MonkeyPatch, pubsub: FakeSubscriber
) -> None:
    garbled = SimpleNamespace(message=SimpleNamespace(data=b"not json", attributes={"deployment": "gs://shared/dep-b"},
                                                      message_id="9"), ack_id="ack-9")
    assert serve_pulling(monkeypatch, [garbled], once=True) == 0
    assert pubsub.deadlines == [(["ack-9"], 0)] and pubsub.acknowledged == []


def test_request_names_the_deployment_it_is_published_for(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[dict[str, object]] = []
    monkeypatch.setattr(agent, "publish_json", lambda project, topic, body: published.append(dict(body)) or "1")
    agent.request_extract(CONFIG_A, ["a_only"])
    agent.request_extract(CONFIG_A, [])
    assert published == [{"deployment": "gs://shared/dep-a", "tables": ["a_only"]}, {"deployment": "gs://shared/dep-a"}]


def extract_event(body: dict[str, object]) -> CloudEvent:
    data = base64.b64encode(json.dumps(body).encode()).decode()
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "5"},
                      {"message": {"data": data, "attributes": {}, "messageId": "5"}})


def test_the_extractor_function_acknowledges_another_deployments_request_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(RAW_CONFIG))
    monkeypatch.setenv(handler.CONFIG_VARIABLE, str(tmp_path / "config.yaml"))
    extracted: list[list[str]] = []
    monkeypatch.setattr(handler, "extract", lambda config, tables, force_full: extracted.append(tables) or Extraction())
    caplog.set_level(logging.INFO)

    assert handler.handle_extract_request(extract_event({"table": "customers", "deployment": "gs://multi-c"})) == \
        Extraction()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "gs://multi-c/snapshots" in warned[0].getMessage()
    assert "gs://shared/dep-a" in warned[0].getMessage() and extracted == []

    handler.handle_extract_request(extract_event({"table": "customers", "deployment": "gs://shared/dep-a"}))
    handler.handle_extract_request(extract_event({"table": "customers"}))
    assert extracted == [["customers"], ["customers"]]


def repaired_manifest() -> Manifest:
    columns = [Column(name="id", bq_name="id", source_type="INTEGER", bq_type="INT64")]
    return Manifest(
        format_version=1, run_id="20261125T101010000001Z-aaaaaa", source_table="customers",
        target=Target(project="p-1", dataset="d", table="customers", pubsub_project="p-1"), mode="full",
        sequence=1, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
        schema=TableSchema(columns=columns, key=["id"]), hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[], row_count=0, fingerprint=Fingerprint(count=0, xor60=0, sum32=0))


def test_a_repair_request_names_the_deployment_whose_manifest_it_repairs() -> None:
    manifest = repaired_manifest()
    uri = f"gs://multi-c/snapshots/customers/{manifest.run_id}/_manifest.json"
    assert repair_request_body(manifest, uri, "why")["deployment"] == "gs://multi-c/snapshots"
    assert "deployment" not in repair_request_body(manifest, None, "why")
