"""The people who run the operator commands (var.operators): each member holds exactly the roles
listed here, scoped as the service accounts' grants are, applied by the same resources; a member
without its type is refused; and the roles are checked against the calls the commands' code makes
(tests/infra/iam_calls.py, followed through matrix_sync's modules as well as shared's)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix_sync import package
from shared import topology
from tests.infra import hcl, iam_calls
from tests.infra.conftest import ROOT, Evaluate, TerraformError
from tests.infra.test_iam import APPLIED_BY, MODES
from tests.infra.test_iam_calls import ROLE_PERMISSIONS, _admits

SNAPSHOTS_ONLY = "snapshot-objects-only"
DEAD_LETTER_SUBSCRIPTIONS = sorted(topology.dead_letter_subscription(f) for f in topology.FUNCTIONS)
# the topics dead letters are replayed to: each consumer subscription's (matrix_sync.dead_letters.source_topic)
REPLAY_TOPICS = {topic for _entry, topic in topology.FUNCTIONS.values()} | {
    topic for _function, topic in topology.REQUEST_SUBSCRIPTIONS.values()}
OPERATOR = {
    ("roles/bigquery.jobUser", "project", None),
    # delete, truncate, compare-keys --repair, validate --record, reconcile's repairs and certificates,
    # create-tables --apply; the ledger and results tables are in the target dataset
    ("roles/bigquery.dataEditor", "dataset:target", None),
    ("roles/bigquery.dataEditor", "dataset:staging", None),  # reconcile's staged snapshot, compare-keys' hash table
    ("roles/storage.objectViewer", "bucket:snapshots", SNAPSHOTS_ONLY),  # manifests, key indexes, _extractions/
    # compare-keys --repair extracts again, as the agent does: new objects, and the lease and outcome rewritten
    ("roles/storage.objectCreator", "bucket:snapshots", SNAPSHOTS_ONLY),
    ("roles/storage.objectUser", "bucket:snapshots", "extraction-state-only"),
    # request, reconcile --publish, reconcile's repair requests and alerts, dead-letters --replay
    *{("roles/pubsub.publisher", f"topic:{t}", None) for t in REPLAY_TOPICS | {
        topology.EXTRACT_REQUESTS_TOPIC, topology.RECONCILE_REQUESTS_TOPIC, topology.ALERTS_TOPIC}},
    # dead-letters: get (is it there?), pull and hand back, acknowledge
    *{("roles/pubsub.viewer", f"subscription:{s}", None) for s in DEAD_LETTER_SUBSCRIPTIONS},
    *{("roles/pubsub.subscriber", f"subscription:{s}", None) for s in DEAD_LETTER_SUBSCRIPTIONS},
}
MEMBERS = ["user:alice@example.com", "group:dwh-operators@example.com",
           "serviceAccount:ops-bot@acme-matrix-dev.iam.gserviceaccount.com"]

# The operator commands (README "Commands") by the module and functions that implement them.
COMMANDS = {
    "status, validate, delete, truncate, compare-keys": (
        "matrix_sync/operator.py", ["status", "validate", "delete", "truncate", "compare_keys"]),
    "reconcile, request": ("matrix_sync/cli.py", ["reconcile_command", "request"]),
    "dead-letters": ("matrix_sync/dead_letters_command.py", ["dead_letters"]),
    "report": ("matrix_sync/report.py", ["report"]),
    "create-tables": ("matrix_sync/generate.py", ["create_tables"]),
}
# Calls iam_calls.CALL_PERMISSIONS does not list that only these commands make.
MORE_CALLS = {"get_subscription": {"pubsub.subscriptions.get"}, "modify_ack_deadline": {"pubsub.subscriptions.consume"}}
ROLES = {**ROLE_PERMISSIONS, "roles/pubsub.viewer": {"pubsub.subscriptions.get"}}
# What the commands' code calls and the operators are deliberately not granted, and why.
NOT_GRANTED = {
    # compare-keys and create-tables connect to the source; with source.password_secret the password
    # comes from Secret Manager. That is the pipeline's own source password: not for every operator.
    # Operators log in with their own (a config without password_secret, MATRIX_SOURCE__URL or
    # MATRIX_SOURCE__PASSWORD), or are granted secretAccessor on that secret by hand (infra/README.md).
    "secretmanager.versions.access",
}
# Only against the local stack (matrix_sync.environment.target_config, when a stack runs): creates
# the bucket, datasets, topics and subscriptions the config names.
LOCAL_STACK_ONLY = {"ensure_resources", "use_stack"}


def _operator_grants(evaluate: Evaluate, mode: str, members: list[str]) -> list[dict[str, str]]:
    return evaluate("local.operator_grant_list", extractor=MODES[mode], operators=members)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_each_operator_holds_exactly_the_roles_listed(mode: str, evaluate: Evaluate) -> None:
    grants = _operator_grants(evaluate, mode, MEMBERS)
    assert len(grants) == len({(g["member"], g["role"], g["scope"]) for g in grants}), "a grant is listed twice"
    held: dict[str, set[tuple[str, str, str | None]]] = {}
    for g in grants:
        held.setdefault(g["member"], set()).add((g["role"], g["scope"], g.get("condition")))
    assert held == {member: OPERATOR for member in MEMBERS}


def test_nobody_is_an_operator_by_default(evaluate: Evaluate) -> None:
    assert evaluate("var.operators") == []
    assert evaluate("local.operator_grant_list") == []


@pytest.mark.parametrize("member", ["alice@example.com", "domain:example.com", "allUsers", "user:", "user:alice",
                                    "principal://iam.googleapis.com/x", "User:alice@example.com"])
def test_a_member_without_its_type_is_refused(member: str, evaluate: Evaluate) -> None:
    with pytest.raises(TerraformError, match="operators must be IAM members with their type"):
        evaluate("var.operators", operators=[member])


def test_a_member_named_twice_is_refused(evaluate: Evaluate) -> None:
    with pytest.raises(TerraformError, match="operators names a member twice"):
        evaluate("var.operators", operators=[MEMBERS[0], MEMBERS[0]])


def test_operator_roles_are_narrow(evaluate: Evaluate) -> None:
    for mode in MODES:
        for g in _operator_grants(evaluate, mode, MEMBERS[:1]):
            assert g["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), g
            assert not g["role"].endswith(("admin", "Admin")), g
            assert g["scope"].split(":")[0] in APPLIED_BY, g
            if g["scope"] == "project":
                assert g["role"] == "roles/bigquery.jobUser", g
            if g["scope"].startswith("bucket:"):
                assert g["scope"] == "bucket:snapshots" and g.get("condition"), g


def test_operator_grants_go_through_the_service_accounts_resources(terraform: hcl.Module) -> None:
    """iam.tf's local.grants holds both lists, so every resource applying grants applies them."""
    grants = hcl.expression(terraform.locals()["grants"])
    assert "for g in local.grant_list" in grants and "for g in local.operator_grant_list" in grants
    assert "member = g.member" in grants
    assert grants.count("condition = try(local.conditions[g.condition], null)") == 2
    subscriptions = hcl.expression(terraform.locals()["subscriptions"])
    assert "google_pubsub_subscription.consumer" in subscriptions and "google_pubsub_subscription.dead_letter" in subscriptions
    binding = terraform.resource("google_pubsub_subscription_iam_member", "grant")
    assert hcl.expression(binding["subscription"]) == "local.subscriptions[each.value.target]"


def test_the_dead_letter_subscriptions_granted_are_those_terraform_creates(evaluate: Evaluate) -> None:
    for mode in MODES:
        dead_letters = evaluate("local.dead_letter_topics", extractor=MODES[mode])
        suffix = evaluate("local.dead_letter_subscription_suffix", extractor=MODES[mode])
        created = sorted(f"{f}{topology.DEAD_LETTER_SUFFIX}{suffix}" for f in dead_letters)
        assert created == DEAD_LETTER_SUBSCRIPTIONS, mode
        consumers = evaluate("local.consumer_subscriptions", extractor=MODES[mode])
        assert {s["topic"] for s in consumers.values()} <= REPLAY_TOPICS, mode


# --- against the code -----------------------------------------------------------------------------


def _files(entry: Path, root: Path = ROOT) -> set[Path]:
    """package.reachable_files, following matrix_sync's own modules too (the CLI lives there)."""
    return package.reachable_files(entry, root, packages=(package.SHARED, "matrix_sync"))


@pytest.fixture()
def operator_code(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(iam_calls, "reachable_files", _files)
    monkeypatch.setattr(iam_calls, "LOCAL_STACK_ONLY", iam_calls.LOCAL_STACK_ONLY | LOCAL_STACK_ONLY)
    yield


def _needed(entry: str, functions: list[str]) -> dict[str, set[str]]:
    needed = iam_calls.permissions_needed(ROOT / entry, functions)
    names, _strings = iam_calls.reached(ROOT / entry, functions)
    for call in names & MORE_CALLS.keys():
        for permission in MORE_CALLS[call]:
            needed.setdefault(permission, set()).add(call)
    return needed


def test_the_scan_finds_what_the_commands_are_known_to_call(operator_code: None) -> None:
    dead_letters = _needed(*COMMANDS["dead-letters"])
    assert {"pull", "acknowledge", "modify_ack_deadline"} <= dead_letters["pubsub.subscriptions.consume"]
    assert "publish" in dead_letters["pubsub.topics.publish"] and "pubsub.subscriptions.get" in dead_letters
    operator = _needed(*COMMANDS["status, validate, delete, truncate, compare-keys"])
    assert "load_table_from_file" in operator["bigquery.tables.updateData"]  # compare-keys' keys to delete
    assert "storage.objects.create" in operator  # compare-keys --repair extracts
    assert "publish" in _needed(*COMMANDS["reconcile, request"])["pubsub.topics.publish"]


def test_each_call_of_the_commands_is_permitted_and_each_role_needed(operator_code: None, evaluate: Evaluate) -> None:
    needed: dict[str, set[str]] = {}
    for entry, functions in COMMANDS.values():
        for permission, calls in _needed(entry, functions).items():
            needed.setdefault(permission, set()).update(calls)
    roles = {role for role, _scope, _condition in OPERATOR}
    assert roles <= ROLES.keys()
    held = set().union(*(ROLES[role] for role in roles))
    not_permitted = {p: sorted(calls) for p, calls in needed.items() if p not in held and p not in NOT_GRANTED}
    not_needed = sorted(role for role in roles if not ROLES[role] & needed.keys())
    assert (not_permitted, not_needed) == ({}, []), \
        f"operators: calls not permitted {not_permitted}, roles not needed {not_needed}"
    assert NOT_GRANTED <= needed.keys(), "NOT_GRANTED lists a permission no command needs any more"


def test_each_object_the_commands_replace_is_one_an_operator_may_delete(
        operator_code: None, terraform: hcl.Module, evaluate: Evaluate) -> None:
    bucket, prefix = evaluate("local.snapshot_bucket"), evaluate("local.snapshot_prefix")
    conditions = terraform.locals()["conditions"]
    deleting = [c for role, scope, c in OPERATOR
                if scope == "bucket:snapshots" and "storage.objects.delete" in ROLES[role]]
    assert deleting and all(deleting), "delete only under a condition"
    expressions = [hcl.expression(conditions[c]["expression"]).replace("${local.snapshot_bucket}", bucket)
                   .replace("${local.snapshot_prefix}", prefix) for c in deleting]
    replaced = set().union(*(iam_calls.overwritten_objects(ROOT / e, f) for e, f in COMMANDS.values()))
    assert replaced
    for template in replaced:
        name = template.format(prefix=prefix, target_table="customers", table="customers")
        assert any(_admits(e, f"projects/_/buckets/{bucket}/objects/{name}") for e in expressions), name
    snapshot = f"projects/_/buckets/{bucket}/objects/{prefix}/customers/20260101T000000000000Z-abcdef/_manifest.json"
    assert not any(_admits(e, snapshot) for e in expressions), "snapshots themselves must stay undeletable"
    assert set().union(*(iam_calls.deleted_suffixes(ROOT / e, f) for e, f in COMMANDS.values())) == set()
