"""Each service account holds exactly the roles listed here, where listed, and nothing broader."""
from __future__ import annotations

import ast
from typing import Any

import pytest

from matrix_sync.package import reachable_files
from shared import topology
from tests.infra import hcl
from tests.infra.conftest import ROOT, Evaluate

SNAPSHOTS_ONLY = "snapshot-objects-only"
EXTRACTOR = {
    ("roles/storage.objectCreator", "bucket:snapshots", SNAPSHOTS_ONLY),
    ("roles/storage.objectViewer", "bucket:snapshots", SNAPSHOTS_ONLY),
    ("roles/storage.objectUser", "bucket:snapshots", "extraction-state-only"),  # locks, outcome records
    ("roles/bigquery.jobUser", "project", None),
    ("roles/bigquery.dataViewer", "dataset:target", None),
    ("roles/secretmanager.secretAccessor", "secret:source-url", None),
    ("roles/pubsub.publisher", "topic:alerts", None),  # a table whose definition cannot be snapshotted
}
COMMON = {
    "loader": {
        ("roles/bigquery.jobUser", "project", None),
        ("roles/bigquery.dataEditor", "dataset:target", None),
        ("roles/bigquery.dataEditor", "dataset:staging", None),
        ("roles/storage.objectViewer", "bucket:snapshots", None),
        ("roles/storage.objectCreator", "bucket:snapshots", SNAPSHOTS_ONLY),  # a delta's compacted key index
        # deletes superseded compacted key index parts, and no other object
        ("roles/storage.objectUser", "bucket:snapshots", "compacted-index-parts-only"),
        ("roles/pubsub.publisher", "topic:table-loaded", None),
        ("roles/pubsub.publisher", "topic:alerts", None),
    },
    "reconciler": {
        ("roles/bigquery.jobUser", "project", None),
        ("roles/bigquery.dataEditor", "dataset:target", None),  # repairs delete rows and re-stamp hashes
        ("roles/bigquery.dataEditor", "dataset:staging", None),
        ("roles/bigquery.dataEditor", f"table:{topology.RECONCILIATION_TABLE}", None),
        ("roles/storage.objectViewer", "bucket:snapshots", None),
        ("roles/pubsub.publisher", "topic:extract-requests", None),
        ("roles/pubsub.publisher", f"topic:{topology.RECONCILE_REQUESTS_TOPIC}", None),
        ("roles/pubsub.publisher", "topic:alerts", None),
    },
    "validator": {
        ("roles/bigquery.jobUser", "project", None),
        ("roles/bigquery.dataViewer", "dataset:target", None),
        ("roles/bigquery.dataEditor", f"table:{topology.VALIDATION_TABLE}", None),
        ("roles/storage.objectViewer", "bucket:snapshots", None),
        ("roles/pubsub.publisher", "topic:alerts", None),
    },
    "build": {
        ("roles/logging.logWriter", "project", None),
        ("roles/artifactregistry.writer", "project", None),
        ("roles/storage.objectViewer", "project", "function-source-buckets-only"),
    },
}
EXPECTED = {
    "extractor-agent": COMMON | {
        "agent": EXTRACTOR | {("roles/pubsub.subscriber", f"subscription:{topology.EXTRACTOR_PULL_SUBSCRIPTION}", None)},
        "push": {("roles/run.invoker", f"function:{f}", None) for f in ("loader", "reconciler", "validator")},
    },
    "extractor-function": COMMON | {
        "extractor": EXTRACTOR | {("roles/secretmanager.secretAccessor", "secret:config", None)},
        "push": {("roles/run.invoker", f"function:{f}", None) for f in topology.FUNCTIONS},
    },
}
MODES = {"extractor-agent": {"deploy_as_function": False}, "extractor-function": {"deploy_as_function": True}}
# scope kind -> the resource type that applies grants of that kind (iam.tf)
APPLIED_BY = {
    "project": "google_project_iam_member", "dataset": "google_bigquery_dataset_iam_member",
    "table": "google_bigquery_table_iam_member", "bucket": "google_storage_bucket_iam_member",
    "topic": "google_pubsub_topic_iam_member", "subscription": "google_pubsub_subscription_iam_member",
    "secret": "google_secret_manager_secret_iam_member", "function": "google_cloud_run_v2_service_iam_member",
}


def _held(grants: list[dict[str, Any]]) -> dict[str, set[tuple[str, str, str | None]]]:
    held: dict[str, set[tuple[str, str, str | None]]] = {}
    for g in grants:
        held.setdefault(g["account"], set()).add((g["role"], g["scope"], g.get("condition")))
    return held


@pytest.mark.parametrize("mode", sorted(MODES))
def test_service_accounts_hold_only_the_roles_listed(mode: str, evaluate: Evaluate) -> None:
    grants = evaluate("local.grant_list", extractor=MODES[mode])
    assert len(grants) == len({(g["account"], g["role"], g["scope"]) for g in grants}), "a grant is listed twice"
    assert _held(grants) == EXPECTED[mode]
    assert set(evaluate("local.service_accounts", extractor=MODES[mode])) == set(EXPECTED[mode])


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_basic_or_admin_roles(mode: str, evaluate: Evaluate) -> None:
    for g in evaluate("local.grant_list", extractor=MODES[mode]):
        assert g["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), g
        assert not g["role"].endswith(("admin", "Admin")), g
        if g["scope"] == "project":
            assert g["role"] in ("roles/bigquery.jobUser", "roles/logging.logWriter", "roles/artifactregistry.writer") \
                or g.get("condition"), f"{g} at project level needs a condition"


def test_every_scope_kind_is_applied_by_one_resource(terraform: hcl.Module, evaluate: Evaluate) -> None:
    kinds = {g["scope"].split(":")[0] for mode in MODES.values() for g in evaluate("local.grant_list", extractor=mode)}
    assert kinds == set(APPLIED_BY)
    for kind, type_ in APPLIED_BY.items():
        body = terraform.resource(type_, "grant")
        assert hcl.expression(body["for_each"]) == f'{{for key, g in local.grants : key => g if g.kind == "{kind}"}}'
        assert hcl.expression(body["member"]) == "each.value.member"
        assert hcl.expression(body["role"]) == "each.value.role"


def test_grants_resolve_accounts_and_conditions(terraform: hcl.Module) -> None:
    grants = hcl.expression(terraform.locals()["grants"])
    assert "member = google_service_account.account[g.account].member" in grants
    assert "condition = try(local.conditions[g.condition], null)" in grants
    conditions = terraform.locals()["conditions"]
    expression = conditions[SNAPSHOTS_ONLY]["expression"]
    assert 'resource.name.startsWith(\\"projects/_/buckets/${local.snapshot_bucket}/objects/${local.snapshot_prefix}/\\")' \
        in expression or "objects/${local.snapshot_prefix}/" in expression
    for type_ in ("google_project_iam_member", "google_storage_bucket_iam_member"):
        assert hcl.dynamic(terraform.resource(type_, "grant"), "condition")


def test_service_accounts_are_created_from_the_list(terraform: hcl.Module) -> None:
    account = terraform.resource("google_service_account", "account")
    assert hcl.expression(account["for_each"]) == "local.service_accounts"
    assert account["account_id"] == "${var.name_prefix}-${each.key}"


def test_gcs_service_agent_may_publish_notifications(terraform: hcl.Module) -> None:
    binding = terraform.resource("google_pubsub_topic_iam_member", "gcs_agent_publisher")
    assert hcl.expression(binding["topic"]) == "google_pubsub_topic.topic[local.topology.topics.gcs_notifications].name"
    assert binding["role"] == "roles/pubsub.publisher"
    assert hcl.expression(binding["member"]) == "data.google_storage_project_service_account.gcs_agent.member"
    notification = terraform.resource("google_storage_notification", "snapshots")
    assert "${google_pubsub_topic_iam_member.gcs_agent_publisher}" in notification["depends_on"]


def test_pubsub_service_agent_can_dead_letter_and_sign_pushes(terraform: hcl.Module) -> None:
    publisher = terraform.resource("google_pubsub_topic_iam_member", "pubsub_agent_dead_letter_publisher")
    assert hcl.expression(publisher["for_each"]) == "google_pubsub_topic.dead_letter"
    assert publisher["role"] == "roles/pubsub.publisher"
    subscriber = terraform.resource("google_pubsub_subscription_iam_member", "pubsub_agent_subscriber")
    assert hcl.expression(subscriber["for_each"]) == "google_pubsub_subscription.consumer"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    token = terraform.resource("google_service_account_iam_member", "pubsub_agent_token_creator")
    assert token["role"] == "roles/iam.serviceAccountTokenCreator"
    for binding in (publisher, subscriber, token):
        assert hcl.expression(binding["member"]) == "local.pubsub_agent"
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in terraform.locals()["pubsub_agent"]


def test_agent_is_reached_by_workload_identity_not_keys(terraform: hcl.Module) -> None:
    binding = terraform.resource("google_service_account_iam_member", "agent_workload_identity")
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert not terraform.resources("google_service_account_key"), "no key is created by Terraform"


@pytest.mark.parametrize("function", ["loader", "reconciler", "validator"])
def test_functions_that_stage_tables_may_write_the_staging_dataset(function: str, evaluate: Evaluate) -> None:
    """Code that names the staging dataset suffix creates tables there."""
    stages = any(
        isinstance(node, ast.ImportFrom) and node.module == "shared.topology"
        and any(a.name == "STAGING_DATASET_SUFFIX" for a in node.names)
        for path in reachable_files(ROOT / "functions" / function / "main.py")
        for node in ast.walk(ast.parse(path.read_text()))
    )
    grants = _held(evaluate("local.grant_list"))[function]
    assert stages == (("roles/bigquery.dataEditor", "dataset:staging", None) in grants)
