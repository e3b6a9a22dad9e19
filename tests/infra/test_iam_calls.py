"""Least privilege, from the code's side: the Google API calls each deployed identity's code makes
(tests/infra/iam_calls.py) against the permissions of the roles Terraform grants it
(local.grant_list). A call no held role permits fails, and so does a role none of the calls needs.
Which resource each role is scoped to is test_iam.py's business."""
from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable

import pytest

from shared.key_index import COMPACTED_PART_SUFFIX
from tests.infra import hcl
from tests.infra.conftest import ROOT, Evaluate
from tests.infra.iam_calls import _deletes, _overwrites, deleted_suffixes, overwritten_objects, permissions_needed

_VIEWER = {"bigquery.datasets.get", "bigquery.tables.get", "bigquery.tables.getData", "bigquery.tables.list"}
# The permissions of each predefined role that matter to the calls the code makes (Google's IAM reference).
ROLE_PERMISSIONS: dict[str, set[str]] = {
    "roles/bigquery.jobUser": {"bigquery.jobs.create"},
    "roles/bigquery.dataViewer": _VIEWER,
    "roles/bigquery.dataEditor": _VIEWER | {"bigquery.tables.create", "bigquery.tables.delete",
                                            "bigquery.tables.update", "bigquery.tables.updateData"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectUser": {"storage.objects.create", "storage.objects.delete", "storage.objects.get",
                                 "storage.objects.list", "storage.objects.update"},
    "roles/pubsub.publisher": {"pubsub.topics.publish"},
    "roles/pubsub.subscriber": {"pubsub.subscriptions.consume"},
    "roles/secretmanager.secretAccessor": {"secretmanager.versions.access"},
}
# account -> (mode, the code it runs, its entry points)
CODE = {
    "loader": ("extractor-agent", "functions/loader/main.py", ["on_snapshot_event"]),
    "reconciler": ("extractor-agent", "functions/reconciler/main.py", ["on_table_loaded"]),
    "validator": ("extractor-agent", "functions/validator/main.py", ["on_table_loaded"]),
    "agent": ("extractor-agent", "matrix_sync/agent.py", ["serve"]),
    "extractor": ("extractor-function", "functions/extractor/main.py", ["on_extract_request"]),
}
MODES = {"extractor-agent": {"deploy_as_function": False}, "extractor-function": {"deploy_as_function": True}}
KNOWN_GAPS: dict[str, str] = {}


def _held_roles(evaluate: Evaluate, account: str) -> set[str]:
    mode, _code, _entries = CODE[account]
    return {g["role"] for g in evaluate("local.grant_list", extractor=MODES[mode]) if g["account"] == account}


def _cases() -> list[object]:
    return [pytest.param(account, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[account]))
            if account in KNOWN_GAPS else account for account in CODE]


def test_every_role_held_by_code_identities_is_modelled(evaluate: Evaluate) -> None:
    for account in CODE:
        assert _held_roles(evaluate, account) <= ROLE_PERMISSIONS.keys(), account


def test_the_call_graph_finds_the_calls_each_function_is_known_to_make() -> None:
    """The scan itself: the loader loads from GCS and publishes, the agent pulls, the extractor uploads."""
    loader = permissions_needed(ROOT / "functions/loader/main.py", ["on_snapshot_event"])
    assert {"load_table_from_uri"} <= loader["bigquery.jobs.create"] and "publish" in loader["pubsub.topics.publish"]
    agent = permissions_needed(ROOT / "matrix_sync/agent.py", ["serve"])
    assert "pull" in agent["pubsub.subscriptions.consume"] and "pubsub.subscriptions.create" not in agent
    extractor = permissions_needed(ROOT / "functions/extractor/main.py", ["on_extract_request"])
    assert "upload_from_string" in extractor["storage.objects.create"]
    assert "pubsub.subscriptions.consume" not in extractor and "bigquery.tables.updateData" not in extractor


@pytest.mark.parametrize("account", _cases())
def test_each_call_is_permitted_and_each_role_needed(account: str, evaluate: Evaluate) -> None:
    _mode, code, entries = CODE[account]
    needed = permissions_needed(ROOT / code, entries)
    roles = _held_roles(evaluate, account)
    held = set().union(*(ROLE_PERMISSIONS[role] for role in roles))
    not_permitted = {permission: sorted(calls) for permission, calls in needed.items() if permission not in held}
    not_needed = sorted(role for role in roles if not ROLE_PERMISSIONS[role] & needed.keys())
    assert (not_permitted, not_needed) == ({}, []), \
        f"{account}: calls not permitted {not_permitted}, roles not needed {not_needed}"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_only_the_push_identity_invokes_functions_and_nobody_anonymous(mode: str, evaluate: Evaluate) -> None:
    grants = evaluate("local.grant_list", extractor=MODES[mode])
    invokers = {g["account"] for g in grants if g["role"] == "roles/run.invoker"}
    assert invokers == {"push"}
    for path in (ROOT / "infra").glob("*.tf"):
        text = path.read_text()
        assert "allUsers" not in text and "allAuthenticatedUsers" not in text, path.name


def test_local_stack_only_functions_are_called_only_behind_the_emulator_check() -> None:
    import ast

    from tests.infra.iam_calls import LOCAL_STACK_ONLY

    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            called = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", None)
                      for n in ast.walk(node) if isinstance(n, ast.Call)}
            if called & LOCAL_STACK_ONLY:
                assert "emulated" in called, f"{path}:{node.name} calls {called & LOCAL_STACK_ONLY} unguarded"


LOCKS = "{prefix}/_locks/{target_table}.json"
OUTCOMES = "{prefix}/_extractions/{target_table}.json"


def test_the_call_graph_finds_every_object_the_extractor_replaces() -> None:
    """The lease (generation-matched) and the last-outcome record (rewritten on every extraction)."""
    for account in ("agent", "extractor"):
        _mode, code, entries = CODE[account]
        assert overwritten_objects(ROOT / code, entries) == {LOCKS, OUTCOMES}, account
    for account in ("loader", "reconciler", "validator"):  # create-only: new names, or only_if_new
        _mode, code, entries = CODE[account]
        assert overwritten_objects(ROOT / code, entries) == set(), account


def _body(source: str) -> ast.FunctionDef:
    node = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


@pytest.mark.parametrize("source, replaced", [
    ("def f(b, p, t):\n    gcs.upload(b, outcome_name(p, t), data, 'application/json')", {OUTCOMES}),
    ("def f(b, p, t):\n    gcs.upload(b, name=outcome_name(p, t), data=d, content_type='x')", {OUTCOMES}),
    ("def f(b, p, t):\n    client.bucket(b).blob(outcome_name(p, t)).upload_from_string(d)", {OUTCOMES}),
    ("def f(b, p, t):\n    name = outcome_name(p, t)\n    gcs.upload(b, name, d, 'x')", {OUTCOMES}),
    ("def f(b, p, t):\n    name = outcome_name(p, t)\n    gcs.upload(b, name, d, 'x', only_if_new=True)", set()),
    ("def f(b, p, t):\n    blob.upload_from_string(d, if_generation_match=generation)",
     {"? (a generation-matched upload in f)"}),  # no builder in its module: the test names it, unresolved
    ("def f(b, p, t):\n    gcs.upload(b, outcome_name(p, t), d, 'x', only_if_new=True)", set()),
    ("def f(b, p, t):\n    client.bucket(b).blob(outcome_name(p, t)).upload_from_string(d, if_generation_match=0)",
     set()),
    ("def f(self, name):\n    gcs.upload(self.bucket, f'{self.folder}/{name}', d, 'x')", set()),
    ("def f(b, prefix, parts):\n    gcs.upload(b, f'{prefix}{len(parts):05d}.parquet', d, 'x')", set()),
    ("def f(b, folder):\n    gcs.upload(b, snapshot_folder(c, t, run_id), d, 'x')", set()),
])
def test_an_upload_replaces_an_object_only_when_its_name_is_fixed_and_unguarded(source: str,
                                                                              replaced: set[str]) -> None:
    templates = {"outcome_name": OUTCOMES}  # snapshot_folder takes a run id: no builder of a fixed name
    assert _overwrites(_body(source), templates, set()) == replaced


def _admits(expression: str, resource: str) -> bool:
    """An IAM condition made of `resource.name.startsWith("...")` and `resource.name.endsWith("...")`
    tests joined by && into clauses joined by ||, applied."""
    return any(all(_test(atom, expression)(resource) for atom in clause.split(" && "))
               for clause in expression.split(" || "))


def _test(atom: str, expression: str) -> Callable[[str], bool]:
    match = re.fullmatch(r'resource\.name\.(startsWith|endsWith)\("([^"]+)"\)', atom.strip())
    assert match, f"not made of startsWith/endsWith tests joined by && and ||: {expression}"
    method, text = match[1], match[2]
    return (lambda name: name.startswith(text)) if method == "startsWith" else (lambda name: name.endswith(text))


def _delete_conditions(account: str, terraform: hcl.Module, evaluate: Evaluate) -> tuple[list[str], str, str]:
    """(the conditions under which `account` may delete snapshot-bucket objects, bucket, prefix)."""
    mode, _code, _entries = CODE[account]
    variables = {"extractor": MODES[mode]}
    bucket, prefix = evaluate("local.snapshot_bucket", **variables), evaluate("local.snapshot_prefix", **variables)
    conditions = terraform.locals()["conditions"]
    deleting = [g for g in evaluate("local.grant_list", **variables) if g["account"] == account
                and "storage.objects.delete" in ROLE_PERMISSIONS[g["role"]] and g["scope"] == "bucket:snapshots"]
    assert deleting and all(g.get("condition") for g in deleting), "delete only under a condition"
    expressions = [hcl.expression(conditions[g["condition"]]["expression"])
                   .replace("${local.snapshot_bucket}", bucket).replace("${local.snapshot_prefix}", prefix)
                   for g in deleting]
    return expressions, bucket, prefix


@pytest.mark.parametrize("account", ["agent", "extractor"])
def test_each_object_the_code_replaces_is_one_its_delete_permission_covers(
        account: str, terraform: hcl.Module, evaluate: Evaluate) -> None:
    """Replacing an object needs storage.objects.delete on it, which the extractor holds only through
    objectUser under a condition: every object the code replaces must be inside that condition."""
    _mode, code, entries = CODE[account]
    expressions, bucket, prefix = _delete_conditions(account, terraform, evaluate)
    for template in overwritten_objects(ROOT / code, entries):
        name = template.format(prefix=prefix, target_table="customers", table="customers")
        resource = f"projects/_/buckets/{bucket}/objects/{name}"
        assert any(_admits(e, resource) for e in expressions), f"{account} replaces {name}, may not delete it"
    run = "20260101T000000000000Z-abcdef"
    snapshot = f"projects/_/buckets/{bucket}/objects/{prefix}/customers/{run}/part-00000.parquet"
    assert not any(_admits(e, snapshot) for e in expressions), "snapshots themselves must stay undeletable"


RUN = "20260101T000000000000Z-abcdef"


def test_the_call_graph_finds_what_the_loader_deletes_and_nobody_else_deletes() -> None:
    """The loader prunes superseded compacted key index parts; no other identity deletes an object."""
    for account, (_mode, code, entries) in CODE.items():
        expected = {COMPACTED_PART_SUFFIX} if account == "loader" else set()
        assert deleted_suffixes(ROOT / code, entries) == expected, account
    assert "delete_blob" in permissions_needed(ROOT / "functions/loader/main.py",
                                               ["on_snapshot_event"])["storage.objects.delete"]


@pytest.mark.parametrize("source, deleted", [
    ("def f(uri):\n    gcs.delete_with_suffix(uri, key_index.COMPACTED_PART_SUFFIX)", {".compacted.parquet"}),
    ("def f(uri):\n    gcs.delete_with_suffix(uri, suffix=SUFFIX)", {".compacted.parquet"}),
    ("def f(uri):\n    gcs.delete_with_suffix(uri, '.x')", {".x"}),
    ("def f(uri, s):\n    gcs.delete_with_suffix(uri, s)", {"? (a delete_with_suffix call in f)"}),
    ("def f(b, name):\n    client.bucket(b).delete_blob(name)", {"? (a delete_blob call in f)"}),
    ("def delete_with_suffix(uri, suffix):\n    client.bucket(b).delete_blob(name)", set()),
])
def test_a_delete_is_resolved_to_the_suffix_it_is_limited_to(source: str, deleted: set[str]) -> None:
    constants = {"COMPACTED_PART_SUFFIX": ".compacted.parquet", "SUFFIX": ".compacted.parquet"}
    assert _deletes(_body(source), constants) == deleted


def test_the_loader_may_delete_exactly_the_objects_its_code_deletes(terraform: hcl.Module,
                                                                    evaluate: Evaluate) -> None:
    """storage.objects.delete only under a condition admitting the compacted parts the code deletes
    (under the snapshot prefix) and nothing the pipeline must keep."""
    _mode, code, entries = CODE["loader"]
    expressions, bucket, prefix = _delete_conditions("loader", terraform, evaluate)

    def admitted(name: str) -> bool:
        return any(_admits(e, f"projects/_/buckets/{bucket}/objects/{name}") for e in expressions)

    run = f"{prefix}/dbo.Customers/{RUN}"
    for suffix in deleted_suffixes(ROOT / code, entries):
        assert admitted(f"{run}/_index/compacted-a1b2c3-00000{suffix}"), suffix
        assert not admitted(f"elsewhere/{RUN}/_index/compacted-a1b2c3-00000{suffix}"), "outside the prefix"
    kept = ["_manifest.json", "part-00000.parquet", "_index/compacted.json", "_index/compacted-a1b2c3-00000.parquet",
            "_index/patch-00000.parquet", "_index/index-00000.parquet", "deleted-00000.parquet",
            "quarantine-00000.jsonl"]
    assert not [name for name in kept if admitted(f"{run}/{name}")]
    assert not admitted(f"{prefix}/_locks/dbo.Customers.json")
    conditions = terraform.locals()["conditions"]
    assert conditions["compacted-index-parts-only"]["expression"].count("endsWith") == 1
