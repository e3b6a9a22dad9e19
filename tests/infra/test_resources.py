"""What the storage, BigQuery, scheduler, secret and network resources promise, and the config file
they are derived from (the same file the code reads)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import topology
from shared.config import load_config
from shared.events import Message
from shared.extractor.handler import foreign_root, requested_tables
from shared.topology import snapshot_root
from tests.infra import hcl
from tests.infra.conftest import EXAMPLE_CONFIG, EXAMPLE_PROJECT, INFRA, ROOT, Evaluate, TerraformError


def test_snapshot_bucket_is_private_versioned_and_cleans_up(terraform: hcl.Module) -> None:
    bucket = terraform.resource("google_storage_bucket", "snapshots")
    assert hcl.expression(bucket["name"]) == "local.snapshot_bucket"
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert hcl.one(bucket["versioning"])["enabled"] is True
    rules = [(hcl.one(r["action"])["type"], hcl.one(r["condition"])) for r in bucket["lifecycle_rule"]]
    conditions = {hcl.expression(c.get("age", "")): c for kind, c in rules if kind == "Delete" and "age" in c}
    snapshots = conditions["var.snapshot_bucket.snapshot_retention_days"]
    assert snapshots["matches_prefix"] == ["${local.snapshot_prefix}/"]
    staging = conditions["var.snapshot_bucket.staging_retention_days"]
    assert hcl.expression(staging["matches_prefix"]) == "var.snapshot_bucket.staging_prefixes"
    assert any("days_since_noncurrent_time" in c for _, c in rules), "old versions must expire too"


def test_staging_objects_go_sooner_than_snapshots(evaluate: Evaluate) -> None:
    settings = evaluate("var.snapshot_bucket")
    assert settings["staging_retention_days"] < settings["snapshot_retention_days"]
    with pytest.raises(TerraformError, match="staging_retention_days"):
        evaluate("var.snapshot_bucket", snapshot_bucket={"snapshot_retention_days": 7, "staging_retention_days": 9})


def test_notification_announces_finalized_snapshot_objects(terraform: hcl.Module, evaluate: Evaluate) -> None:
    notification = terraform.resource("google_storage_notification", "snapshots")
    assert notification["event_types"] == ["OBJECT_FINALIZE"]
    assert notification["payload_format"] == "JSON_API_V1"
    assert notification["object_name_prefix"] == "${local.snapshot_prefix}/"
    assert hcl.expression(notification["topic"]) == "google_pubsub_topic.topic[local.topology.topics.gcs_notifications].id"
    assert evaluate("local.topology.topics.gcs_notifications") == topology.GCS_NOTIFICATIONS_TOPIC


def test_function_archives_are_named_by_content(terraform: hcl.Module) -> None:
    source = terraform.resource("google_storage_bucket_object", "source")
    assert hcl.expression(source["for_each"]) == "local.deployed_functions"
    assert source["name"] == "functions/${each.key}/${local.archive_md5[each.key]}.zip"
    archive_md5 = hcl.expression(terraform.locals()["archive_md5"])
    assert "filemd5(path)" in archive_md5
    assert hcl.expression(terraform.locals()["archives"]) == \
        '{for name in keys(local.deployed_functions) : name => "${local.dist_dir}/${name}.zip"}'


def test_bigquery_tables_take_their_schema_from_the_generated_json(terraform: hcl.Module, evaluate: Evaluate) -> None:
    tables = terraform.resource("google_bigquery_table", "sync")
    assert hcl.expression(tables["for_each"]) == "local.sync_tables"
    assert hcl.expression(tables["schema"]) == 'file("${path.module}/schemas/${each.key}.json")'
    assert tables["clustering"] == ["table_id"]
    assert set(evaluate("local.sync_tables")) == {topology.LEDGER_TABLE, topology.RECONCILIATION_TABLE,
                                                   topology.VALIDATION_TABLE}
    for name in evaluate("local.sync_tables"):
        assert (INFRA / "schemas" / f"{name}.json").is_file()


def test_datasets_come_from_the_config(terraform: hcl.Module, evaluate: Evaluate) -> None:
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert evaluate("local.dataset_id") == config["bigquery"]["dataset"]
    assert evaluate("local.bigquery_location") == config["bigquery"].get("location", "US")
    assert evaluate("local.snapshot_bucket") == config["gcs"]["bucket"]
    target = terraform.resource("google_bigquery_dataset", "target")
    assert hcl.expression(target["dataset_id"]) == "local.dataset_id"
    assert hcl.expression(terraform.resource("google_bigquery_dataset", "staging")["dataset_id"]) == "local.staging_dataset_id"


def test_the_example_config_is_one_the_code_accepts() -> None:
    config = load_config(EXAMPLE_CONFIG, environ={})
    assert config.bigquery.project == config.pubsub.project == EXAMPLE_PROJECT
    assert config.gcs.prefix == topology.SNAPSHOT_PREFIX


def _config_with_groups(tmp_path: Path) -> Path:
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["tables"][0]["group"] = "hourly"
    raw["tables"][1]["group"] = "hourly"
    path = tmp_path / "grouped.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_one_scheduler_job_per_table_group(tmp_path: Path, evaluate: Evaluate, terraform: hcl.Module) -> None:
    names = [t["name"] for t in yaml.safe_load(EXAMPLE_CONFIG.read_text())["tables"]]
    assert evaluate("local.table_groups") == {"default": names}, "no group key: every table is in default"
    grouped = evaluate("local.table_groups", config_path=str(_config_with_groups(tmp_path)))
    assert grouped == {"hourly": names[:2], "default": names[2:]}
    job = terraform.resource("google_cloud_scheduler_job", "extract")
    assert hcl.expression(job["for_each"]) == "local.table_groups"
    target = hcl.one(job["pubsub_target"])
    assert hcl.expression(target["topic_name"]) == "google_pubsub_topic.topic[local.topology.topics.extract_requests].id"
    assert hcl.expression(target["data"]) == ("base64encode(jsonencode({group = each.key, tables = sort(each.value), "
                                              "deployment = local.extract_request_deployment}))")
    assert hcl.expression(target["attributes"]["deployment"]) == "local.extract_request_deployment"


def test_scheduler_message_names_this_deployment_as_the_code_does(tmp_path: Path, evaluate: Evaluate,
                                                                    terraform: hcl.Module) -> None:
    """Deployments sharing a Pub/Sub project share extract-requests: the request names its snapshot root."""
    root = terraform.locals()["extract_request_deployment"]
    config = load_config(EXAMPLE_CONFIG, environ={})
    assert evaluate(f'"{root}"') == snapshot_root(config.gcs.bucket, config.gcs.prefix)
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["gcs"]["prefix"] = "/dep-a/"
    (tmp_path / "prefixed.yaml").write_text(yaml.safe_dump(raw))
    assert evaluate(f'"{root}"', config_path=str(tmp_path / "prefixed.yaml")) == f"gs://{config.gcs.bucket}/dep-a"


def test_scheduler_message_is_an_extract_request_the_code_understands() -> None:
    config = load_config(EXAMPLE_CONFIG, environ={})
    names = sorted(t.name for t in config.tables)
    root = snapshot_root(config.gcs.bucket, config.gcs.prefix)
    message = Message({"group": "default", "tables": names, "deployment": root}, {"group": "default",
                                                                                  "deployment": root}, "1")
    assert requested_tables(config, message) == names
    assert foreign_root(config, message) is None


@pytest.mark.parametrize("problem, variables, config", [
    ("must both be", {"project_id": "acme-other-project"}, None),
    ("holds a password", {}, {"source": {"url": "mssql+pymssql://etl:secret@db:1433/Matrix"}}),
    ("a group no table", {"scheduler": {"groups": {"hourly": {}}}}, None),
    ("ack_deadline_seconds", {"functions": {"loader": {"timeout_seconds": 900}}}, None),
])
def test_config_problems_stop_the_plan(problem: str, variables: dict[str, Any], config: dict[str, Any] | None,
                                       tmp_path: Path, evaluate: Evaluate) -> None:
    assert evaluate("local.config_problems") == []
    if config is not None:
        raw = yaml.safe_load(EXAMPLE_CONFIG.read_text()) | config
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
        variables = {**variables, "config_path": str(tmp_path / "c.yaml")}
    problems = evaluate("local.config_problems", **variables)
    assert len(problems) == 1 and problem in problems[0], problems


def test_environment_must_be_known(evaluate: Evaluate) -> None:
    with pytest.raises(TerraformError, match="environment must be one of"):
        evaluate("var.environment", environment="qa")


def test_source_password_secret_has_no_value_in_terraform(terraform: hcl.Module, evaluate: Evaluate) -> None:
    assert "source-url" in evaluate("local.secrets")
    versions = terraform.resources("google_secret_manager_secret_version")
    assert set(versions) == {"config"}, "only the config file (no password in it) gets a version from Terraform"
    assert hcl.expression(versions["config"]["count"]) == "var.extractor.deploy_as_function ? 1 : 0"
    assert hcl.expression(versions["config"]["secret_data"]) == "file(local.config_file)"


def test_vpc_connector_only_for_a_cloud_extractor(terraform: hcl.Module) -> None:
    connector = terraform.resource("google_vpc_access_connector", "extractor")
    assert hcl.expression(connector["count"]) == "local.create_connector ? 1 : 0"
    assert "var.extractor.deploy_as_function && var.network.create_connector" == \
        hcl.expression(terraform.locals()["create_connector"])
    service = hcl.one(terraform.resource("google_cloudfunctions2_function", "function")["service_config"])
    assert hcl.expression(service["vpc_connector"]) == 'each.key == "extractor" ? local.vpc_connector : null'


def test_the_example_tfvars_fit_the_variables(tmp_path: Path, evaluate: Evaluate) -> None:
    example = INFRA / "environments" / "dev" / "terraform.tfvars.example"
    var_file = tmp_path / "dev.tfvars"
    var_file.write_text(example.read_text())
    assert evaluate("local.config_problems", var_file=var_file) == []
    assert evaluate("var.config_path", var_file=var_file) == "environments/dev/matrix-sync.yaml"
    assert evaluate("var.project_id", var_file=var_file) == EXAMPLE_PROJECT
    assert evaluate("local.extractor_account", var_file=var_file) == "agent"


def test_people_are_told_when_a_message_waits_for_them(terraform: hcl.Module, evaluate: Evaluate) -> None:
    policy = terraform.resource("google_monitoring_alert_policy", "waiting_for_people")
    assert policy["combiner"] == "OR"
    conditions = hcl.one(policy["dynamic"])["conditions"]
    assert hcl.expression(conditions["for_each"]) == "local.waiting_for_people"
    threshold = hcl.one(hcl.one(conditions["content"])["condition_threshold"])
    assert "num_undelivered_messages" in threshold["filter"] and "${conditions.value}" in threshold["filter"]
    assert (threshold["comparison"], threshold["threshold_value"]) == ("COMPARISON_GT", 0)
    watched = (INFRA / "pubsub.tf").read_text()
    assert '"a message was dead-lettered" = "one_of(${join(", ", [for s in google_pubsub_subscription.dead_letter' in watched
    assert '"an alert was raised"         = jsonencode(google_pubsub_subscription.alerts.name)' in watched
    assert hcl.expression(policy["notification_channels"]) == "var.alert_notification_channels"
    assert "matrix-sync dead-letters" in hcl.one(policy["documentation"])["content"]
    assert "monitoring.googleapis.com" in (INFRA / "main.tf").read_text()
    with pytest.raises(TerraformError, match="notificationChannels"):
        evaluate("var.alert_notification_channels", alert_notification_channels=["pager"])


def _config(tmp_path: Path, **sections: dict[str, Any]) -> str:
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    path = tmp_path / "matrix-sync.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("dataset, bucket, loadable", [
    ("US", "US", True), ("US", "us-east1", True), ("us", "US-CENTRAL1", True), ("US", "NAM4", True),
    ("US", "EU", True),  # BigQuery's US multi-region loads from a bucket in any location
    ("EU", "EU", True), ("EU", "europe-west1", True), ("eu", "EUROPE-NORTH1", True), ("EU", "EUR4", True),
    ("EU", "US", False), ("EU", "us-central1", False), ("EU", "asia-northeast1", False),
    ("europe-west3", "europe-west3", True), ("europe-west3", "EU", False), ("europe-west3", "europe-west1", False),
    ("asia-northeast1", "ASIA-NORTHEAST1", True), ("asia-northeast1", "ASIA", False),
])
def test_the_snapshot_bucket_is_one_bigquery_can_load_the_dataset_from(
        dataset: str, bucket: str, loadable: bool, tmp_path: Path, evaluate: Evaluate) -> None:
    problems = evaluate("local.config_problems", config_path=_config(tmp_path, bigquery={"location": dataset}),
                        snapshot_bucket={"location": bucket})
    if loadable:
        assert problems == []
    else:
        assert len(problems) == 1 and f"snapshot_bucket.location {bucket}" in problems[0], problems


def test_the_extractor_function_is_created_only_once_its_source_url_secret_holds_a_version(
        tmp_path: Path, evaluate: Evaluate) -> None:
    """Its revision reads MATRIX_SOURCE__URL from versions/latest at start: with none, it cannot start."""
    problems = evaluate("local.config_problems", extractor={"deploy_as_function": True})
    assert len(problems) == 1 and "source_url_secret_ready" in problems[0], problems
    assert "-target='google_secret_manager_secret.secret[\"source-url\"]'" in problems[0]
    assert "gcloud secrets versions add matrix-sync-source-url" in problems[0]
    assert evaluate("local.config_problems", extractor={"deploy_as_function": True,
                                                        "source_url_secret_ready": True}) == []
    assert evaluate("local.config_problems", extractor={"deploy_as_function": False}) == [], "the agent reads it itself"
    secret = f"projects/{EXAMPLE_PROJECT}/secrets/matrix-sync-source-password/versions/latest"
    with_password_secret = _config(tmp_path, source={"password_secret": secret})
    assert evaluate("local.config_problems", config_path=with_password_secret,
                    extractor={"deploy_as_function": True}) == [], "read when connecting, not at start"
    readme = (INFRA / "README.md").read_text()
    assert "source_url_secret_ready" in readme and "-target='google_secret_manager_secret.secret[\"source-url\"]'" \
        in readme


def test_the_extractor_function_waits_for_the_config_secret_version(terraform: hcl.Module) -> None:
    """It mounts the config secret's latest version, which must exist when the revision starts."""
    function = terraform.resource("google_cloudfunctions2_function", "function")
    assert "${google_secret_manager_secret_version.config}" in function["depends_on"]
    volume = hcl.dynamic(hcl.one(function["service_config"]), "secret_volumes")
    assert hcl.one(hcl.one(volume["content"])["versions"])["version"] == "latest"


def test_the_resource_manager_api_is_enabled_and_a_documented_prerequisite(terraform: hcl.Module) -> None:
    """data.google_project and the project IAM grants call it, before Terraform could enable it."""
    assert "cloudresourcemanager.googleapis.com" in hcl.expression(terraform.locals()["required_apis"])
    assert terraform.resource("google_project_service", "api")
    command = "gcloud services enable cloudresourcemanager.googleapis.com"
    assert command in (INFRA / "README.md").read_text()
    assert command in (ROOT / "README.md").read_text()


CONNECTOR_NAME = re.compile(r"[a-z][-a-z0-9]{0,23}[a-z0-9]")  # Serverless VPC Access: at most 25 characters


def test_the_vpc_connector_name_fits_with_the_longest_name_prefix(terraform: hcl.Module, evaluate: Evaluate) -> None:
    connector = terraform.resource("google_vpc_access_connector", "extractor")
    assert hcl.expression(connector["name"]) == "local.vpc_connector_name"
    assert evaluate("local.vpc_connector_name") == "matrix-sync-extractor", "existing connectors keep their name"
    for prefix in ("a" * 18, "a" * 15, "a" * 16, "abcdefghijklmnop-", "m"):
        name = evaluate("local.vpc_connector_name", name_prefix=prefix)
        assert CONNECTOR_NAME.fullmatch(name) and name.startswith(prefix), name
    with pytest.raises(TerraformError, match="name_prefix"):
        evaluate("local.vpc_connector_name", name_prefix="a" * 19)
