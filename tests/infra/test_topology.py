"""Terraform creates the topology the code and the local stack use: same names, same wiring.

topology.tf is evaluated by terraform (both ways the extractor can run); the resources that
iterate it are read with python-hcl2; the local bootstrap is run against a recording Pub/Sub admin.
"""
from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from matrix_sync.package import function_names, reachable_files
from matrix_sync.stack import bootstrap
from shared import topology
from tests.infra import hcl
from tests.infra.conftest import ROOT, Evaluate

AGENT = {"extractor": {"deploy_as_function": False}}
FUNCTION = {"extractor": {"deploy_as_function": True}}
MODES = pytest.mark.parametrize("mode", [AGENT, FUNCTION], ids=["extractor-agent", "extractor-function"])
EMULATOR_VARIABLES = {"PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST"}


@pytest.fixture(scope="module")
def names(evaluate: Evaluate) -> dict[str, Any]:
    return evaluate("local.topology")


def test_names_are_those_of_shared_topology(names: dict[str, Any], evaluate: Evaluate) -> None:
    assert names["topics"] == {
        "gcs_notifications": topology.GCS_NOTIFICATIONS_TOPIC,
        "extract_requests": topology.EXTRACT_REQUESTS_TOPIC,
        "table_loaded": topology.TABLE_LOADED_TOPIC,
        "alerts": topology.ALERTS_TOPIC,
        "reconcile_requests": topology.RECONCILE_REQUESTS_TOPIC,
    }
    assert names["dead_letter_suffix"] == topology.DEAD_LETTER_SUFFIX
    assert "x" + names["push_subscription_suffix"] == topology.subscription_name("x")
    assert names["extractor_pull_subscription"] == topology.EXTRACTOR_PULL_SUBSCRIPTION
    assert names["staging_dataset_suffix"] == topology.STAGING_DATASET_SUFFIX
    assert names["tables"] == {"ledger": topology.LEDGER_TABLE, "reconciliations": topology.RECONCILIATION_TABLE,
                               "validations": topology.VALIDATION_TABLE}
    assert {name: (f["entry_point"], f["trigger_topic"]) for name, f in names["functions"].items()} == topology.FUNCTIONS
    assert {name: (s["function"], s["topic"]) for name, s in names["request_subscriptions"].items()} \
        == topology.REQUEST_SUBSCRIPTIONS
    assert evaluate("local.snapshot_prefix") == topology.SNAPSHOT_PREFIX


def test_every_function_folder_is_a_function_of_the_topology(names: dict[str, Any]) -> None:
    assert set(function_names()) == set(names["functions"]) == set(topology.FUNCTIONS)


@MODES
def test_functions_deployed(mode: dict[str, Any], evaluate: Evaluate) -> None:
    deployed = evaluate("local.deployed_functions", **mode)
    expected = set(topology.FUNCTIONS) - ({"extractor"} if mode is AGENT else set())
    assert set(deployed) == expected


def test_one_function_resource_with_the_entry_point_runtime_and_account(terraform: hcl.Module,
                                                                        evaluate: Evaluate) -> None:
    functions = terraform.resources("google_cloudfunctions2_function")
    assert list(functions) == ["function"], "one resource, one instance per deployed function"
    body = functions["function"]
    assert hcl.expression(body["for_each"]) == "local.deployed_functions"
    assert hcl.expression(body["name"]) == "each.key"
    build = hcl.one(body["build_config"])
    assert hcl.expression(build["entry_point"]) == "each.value.entry_point"
    assert hcl.expression(build["runtime"]) == "local.runtime" and evaluate("local.runtime") == "python312"
    source = hcl.one(hcl.one(build["source"])["storage_source"])
    assert hcl.expression(source["object"]) == "google_storage_bucket_object.source[each.key].name"
    service = hcl.one(body["service_config"])
    assert hcl.expression(service["service_account_email"]) == "google_service_account.account[each.key].email"
    assert hcl.expression(service["environment_variables"]) == "local.function_env[each.key]"
    assert service["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    for setting in ("available_memory", "timeout_seconds", "max_instance_count", "min_instance_count"):
        assert hcl.expression(service[setting]).startswith("local.function_settings[each.key]."), setting
    # delivery and retries belong to the subscriptions (pubsub.tf), which can dead-letter
    assert "event_trigger" not in body


@MODES
def test_each_function_is_fed_by_its_trigger_topic(mode: dict[str, Any], evaluate: Evaluate) -> None:
    consumers = evaluate("local.consumer_subscriptions", **mode)
    expected = {topology.subscription_name(f): (f, trigger, True) for f, (_, trigger) in topology.FUNCTIONS.items()
                if f != "extractor" or mode is FUNCTION}
    if mode is AGENT:
        expected[topology.EXTRACTOR_PULL_SUBSCRIPTION] = ("extractor", topology.EXTRACT_REQUESTS_TOPIC, False)
    expected |= {name: (f, topic, True) for name, (f, topic) in topology.REQUEST_SUBSCRIPTIONS.items()}
    assert {name: (c["function"], c["topic"], c["push"]) for name, c in consumers.items()} == expected


def test_push_subscriptions_deliver_to_the_function_with_its_identity(terraform: hcl.Module) -> None:
    consumer = terraform.resource("google_pubsub_subscription", "consumer")
    assert hcl.expression(consumer["for_each"]) == "local.consumer_subscriptions"
    assert hcl.expression(consumer["name"]) == "each.key"
    assert hcl.expression(consumer["topic"]) == "google_pubsub_topic.topic[each.value.topic].id"
    push = hcl.dynamic(consumer, "push_config")
    assert "local.function_uris, each.value.function" in hcl.expression(push["for_each"])
    content = hcl.one(push["content"])
    oidc = hcl.one(content["oidc_token"])
    assert hcl.expression(oidc["service_account_email"]) == 'google_service_account.account["push"].email'
    assert hcl.expression(content["push_endpoint"]) == hcl.expression(oidc["audience"]) == "push_config.value"
    assert hcl.one(consumer["retry_policy"])


def test_every_consumer_subscription_dead_letters(terraform: hcl.Module) -> None:
    subscriptions = terraform.resources("google_pubsub_subscription")
    policy = hcl.one(subscriptions["consumer"]["dead_letter_policy"])
    assert hcl.expression(policy["dead_letter_topic"]) == "google_pubsub_topic.dead_letter[each.value.function].id"
    assert hcl.expression(policy["max_delivery_attempts"]) == "var.pubsub.max_delivery_attempts"
    # the only others are the pull subscriptions people read: dead letters themselves, and alerts
    people = {name for name, body in subscriptions.items() if "dead_letter_policy" not in body}
    assert people == {"dead_letter", "alerts"}
    for body in subscriptions.values():
        assert hcl.one(body["expiration_policy"])["ttl"] == "", "subscriptions must never expire"


@MODES
def test_one_dead_letter_topic_per_consumer(mode: dict[str, Any], evaluate: Evaluate, terraform: hcl.Module) -> None:
    consumers = evaluate("local.consumer_subscriptions", **mode)
    assert set(evaluate("local.dead_letter_topics", **mode)) == {c["function"] for c in consumers.values()}
    topic = terraform.resource("google_pubsub_topic", "dead_letter")
    assert topic["name"] == "${each.key}${local.topology.dead_letter_suffix}"
    assert topology.dead_letter_topic("loader") == "loader" + evaluate("local.topology.dead_letter_suffix")


@MODES
def test_function_environment(mode: dict[str, Any], evaluate: Evaluate) -> None:
    from shared.config import ENV_PREFIX
    from shared.extractor.handler import CONFIG_VARIABLE

    environments = evaluate("local.function_env", project_id="acme-matrix-dev", **mode)
    assert set(environments) == set(evaluate("local.deployed_functions", **mode))
    for name, env in environments.items():
        assert env["GOOGLE_CLOUD_PROJECT"] == "acme-matrix-dev"
        assert {"MATRIX_ENVIRONMENT", "MATRIX_LOG_LEVEL"} <= set(env)
        assert not EMULATOR_VARIABLES & set(env), f"{name} would talk to an emulator"
    if mode is FUNCTION:
        assert CONFIG_VARIABLE in environments["extractor"]
        secret_env = evaluate("local.extractor_secret_env", **mode)
        assert secret_env == {f"{ENV_PREFIX}SOURCE__URL": "source-url"}


def _topics_named_in_code(function: str) -> set[str]:
    """The topology topics a function's code imports: it publishes to each of them."""
    found = set()
    for path in reachable_files(ROOT / "functions" / function / "main.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "shared.topology":
                found |= {getattr(topology, a.name) for a in node.names if a.name.endswith("_TOPIC")}
    return found


@pytest.mark.parametrize("function", sorted(topology.FUNCTIONS))
def test_every_topic_the_code_publishes_to_exists_and_may_be_published_to(function: str, evaluate: Evaluate) -> None:
    topics = set(evaluate("local.topology.topics").values())
    grants = evaluate("local.grant_list", **FUNCTION)
    published = _topics_named_in_code(function)
    assert published <= topics
    for topic in published:
        assert {"account": function, "role": "roles/pubsub.publisher", "scope": f"topic:{topic}"} in grants, \
            f"{function} publishes to {topic} but may not"


def test_code_publishes_table_loaded_and_alerts() -> None:
    assert {topology.TABLE_LOADED_TOPIC, topology.ALERTS_TOPIC} <= _topics_named_in_code("loader")


# --- drift between Terraform and the local stack's bootstrap ---------------------------------------

class _Recording:
    def __init__(self) -> None:
        self.topics: set[str] = set()
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.datasets: list[str] = []

    # PublisherClient
    def create_topic(self, name: str, retry: object = None) -> None:
        self.topics.add(name.rsplit("/", 1)[-1])

    # SubscriberClient
    def create_subscription(self, request: dict[str, Any], retry: object = None) -> None:
        self.subscriptions[request["name"].rsplit("/", 1)[-1]] = request


@pytest.fixture(scope="module")
def local_stack_topology() -> _Recording:
    """What matrix_sync/stack/bootstrap.py creates, recorded instead of sent to the emulators."""
    recording = _Recording()

    @contextmanager
    def admin(_host: str) -> Iterator[bootstrap.PubSubAdmin]:
        yield bootstrap.PubSubAdmin(recording, recording)  # type: ignore[arg-type]

    patch = pytest.MonkeyPatch()
    patch.setattr(bootstrap, "pubsub_admin", admin)
    patch.setattr(bootstrap, "ensure_bucket", lambda *a, **k: None)
    patch.setattr(bootstrap, "ensure_datasets",
                  lambda _e, _p, datasets, _expiration=None: recording.datasets.extend(datasets))
    try:
        functions = {f: f"http://127.0.0.1:1/{f}" for f in ("loader", "reconciler", "validator")}
        endpoints = bootstrap.Endpoints(pubsub="fake", storage="fake", bigquery="fake", functions=functions)
        bootstrap.ensure_notifications_topic(endpoints, "p")
        bootstrap.ensure_loader_wiring(endpoints, "p")
        bootstrap.ensure_resources(endpoints, bucket="b", bigquery_project="p", dataset="matrix", pubsub_project="p")
    finally:
        patch.undo()
    return recording


def _seconds(duration: object) -> int:
    return int(getattr(duration, "seconds"))


def test_terraform_creates_every_topic_the_local_stack_does(local_stack_topology: _Recording,
                                                            evaluate: Evaluate) -> None:
    names = evaluate("local.topology")
    terraform_topics = set(names["topics"].values()) | {
        f + names["dead_letter_suffix"] for f in evaluate("local.dead_letter_topics", **AGENT)}
    assert local_stack_topology.topics <= terraform_topics
    # the extractor's dead letters exist only in the cloud: locally nothing pushes to an extractor
    assert terraform_topics - local_stack_topology.topics == {topology.dead_letter_topic("extractor")}


def test_terraform_subscriptions_match_the_local_stack(local_stack_topology: _Recording, evaluate: Evaluate) -> None:
    consumers = evaluate("local.consumer_subscriptions", **AGENT)
    names = evaluate("local.topology")
    pubsub = evaluate("var.pubsub")
    terraform_subscriptions = {name: c["topic"] for name, c in consumers.items()}
    for function in evaluate("local.dead_letter_topics", **AGENT):
        dead_letters = function + names["dead_letter_suffix"]
        terraform_subscriptions[dead_letters + evaluate("local.dead_letter_subscription_suffix")] = dead_letters
    terraform_subscriptions[evaluate("local.alerts_subscription")] = topology.ALERTS_TOPIC

    for name, request in local_stack_topology.subscriptions.items():
        assert name in terraform_subscriptions, f"the local stack creates {name}, Terraform does not"
        assert request["topic"].rsplit("/", 1)[-1] == terraform_subscriptions[name]
        if "dead_letter_policy" in request:
            function = consumers[name]["function"]
            assert request["dead_letter_policy"]["dead_letter_topic"].endswith("/" + topology.dead_letter_topic(function))
            assert request["dead_letter_policy"]["max_delivery_attempts"] == pubsub["max_delivery_attempts"]
            assert request["ack_deadline_seconds"] == pubsub["ack_deadline_seconds"]
            retry = request["retry_policy"]
            assert f"{_seconds(retry['minimum_backoff'])}s" == pubsub["minimum_backoff"]
            assert f"{_seconds(retry['maximum_backoff'])}s" == pubsub["maximum_backoff"]
        elif name != topology.EXTRACTOR_PULL_SUBSCRIPTION:  # locally no extractor function dead-letters
            assert name not in consumers, f"{name} dead-letters in Terraform but not in the local stack"
    # what Terraform has beyond the local stack: the extractor function's dead letters (locally the
    # extractor is the on-prem agent, whose pull subscription both create)
    extra = set(terraform_subscriptions) - set(local_stack_topology.subscriptions)
    assert extra == {topology.dead_letter_topic("extractor") + bootstrap.DEAD_LETTER_SUBSCRIPTION_SUFFIX}
    pull = local_stack_topology.subscriptions[topology.EXTRACTOR_PULL_SUBSCRIPTION]
    assert pull["ack_deadline_seconds"] == pubsub["ack_deadline_seconds"]


def test_bootstrap_constants_are_terraform_defaults(evaluate: Evaluate) -> None:
    pubsub = evaluate("var.pubsub")
    assert pubsub["ack_deadline_seconds"] == bootstrap.ACK_DEADLINE_SECONDS
    assert pubsub["max_delivery_attempts"] == bootstrap.MAX_DELIVERY_ATTEMPTS
    assert pubsub["minimum_backoff"] == f"{bootstrap.MIN_BACKOFF_SECONDS}s"
    assert pubsub["maximum_backoff"] == f"{bootstrap.MAX_BACKOFF_SECONDS}s"
    assert evaluate("local.alerts_subscription") == bootstrap.ALERTS_SUBSCRIPTION
    assert evaluate("local.dead_letter_subscription_suffix") == bootstrap.DEAD_LETTER_SUBSCRIPTION_SUFFIX


def test_datasets_match_the_local_stack(local_stack_topology: _Recording, evaluate: Evaluate) -> None:
    config = evaluate("local.config")
    assert local_stack_topology.datasets == ["matrix", "matrix" + topology.STAGING_DATASET_SUFFIX]
    assert evaluate("local.staging_dataset_id") == config["bigquery"]["dataset"] + topology.STAGING_DATASET_SUFFIX


def test_staging_tables_expire_as_the_code_expects(evaluate: Evaluate, terraform: hcl.Module) -> None:
    """Every module that stages tables (loader, reconciler's diff) sets the TTL Terraform gives the dataset."""
    hours = evaluate("var.bigquery")["staging_table_expiration_hours"]
    ttls = {}
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "STAGING_TTL" for t in node.targets):
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                ttls[module] = importlib.import_module(module).STAGING_TTL.total_seconds()
    assert ttls, "no STAGING_TTL in shared/"
    assert set(ttls.values()) == {hours * 3600}, ttls
    staging = terraform.resource("google_bigquery_dataset", "staging")
    assert "var.bigquery.staging_table_expiration_hours * 3600 * 1000" == hcl.expression(staging["default_table_expiration_ms"])


def test_names_in_the_architecture_readme_are_the_topology(names: dict[str, Any]) -> None:
    text = Path(ROOT / "infra" / "README.md").read_text()
    for topic in names["topics"].values():
        assert f"`{topic}`" in text
