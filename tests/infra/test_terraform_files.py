"""infra/ as terraform-google-modules lays a module out: formatted, parseable, typed, documented."""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.infra import hcl
from tests.infra.conftest import INFRA, TERRAFORM_ENV

EXPECTED_FILES = {
    "versions.tf", "backend.tf", "variables.tf", "main.tf", "topology.tf", "storage.tf", "pubsub.tf",
    "functions.tf", "bigquery.tf", "scheduler.tf", "iam.tf", "secrets.tf", "network.tf", "outputs.tf",
}
TF_FILES = sorted(p.relative_to(INFRA).as_posix() for p in INFRA.rglob("*.tf"))


def test_the_module_has_one_file_per_concern() -> None:
    assert EXPECTED_FILES <= {p.name for p in INFRA.glob("*.tf")}
    for extra in ("README.md", "environments/dev/terraform.tfvars.example", "environments/dev/backend.hcl.example",
                  "environments/dev/matrix-sync.yaml"):
        assert (INFRA / extra).is_file(), extra


@pytest.mark.parametrize("name", TF_FILES)
def test_every_tf_file_parses(name: str) -> None:
    assert isinstance(hcl.parse(INFRA / name), dict)


def test_terraform_fmt_is_clean(terraform_bin: str) -> None:
    done = subprocess.run([terraform_bin, "fmt", "-check", "-recursive", "-diff", "-no-color", str(INFRA)],
                          env=TERRAFORM_ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"terraform fmt -recursive infra would change:\n{done.stdout}{done.stderr}"


def test_provider_and_terraform_versions_are_bounded(terraform: hcl.Module) -> None:
    (block,) = [b for _, b in terraform.blocks("terraform") if "required_providers" in b]
    assert re.search(r">=\s*1\.\d+.*<\s*2", block["required_version"])
    google = hcl.one(block["required_providers"])["google"]
    assert google["source"] == "hashicorp/google"
    assert ">=" in google["version"] and "<" in google["version"], "google provider needs a lower and an upper bound"


def test_state_lives_in_a_gcs_backend_configured_at_init(terraform: hcl.Module) -> None:
    backends = [b["backend"] for _, b in terraform.blocks("terraform") if "backend" in b]
    assert len(backends) == 1
    (backend,) = backends[0]
    assert backend == {"gcs": {}}, "partial configuration: bucket and prefix come from -backend-config"
    text = (INFRA / "backend.tf").read_text()
    assert "-backend-config" in text


def test_every_variable_is_typed_and_described(terraform: hcl.Module) -> None:
    for name, variable in terraform.variables().items():
        assert variable.get("type"), f"variable {name} has no type"
        assert str(variable.get("description", "")).strip(), f"variable {name} has no description"


def test_complex_inputs_are_objects_not_string_bags(terraform: hcl.Module) -> None:
    for name, variable in terraform.variables().items():
        type_ = hcl.expression(variable["type"])
        if name != "labels":
            assert not re.fullmatch(r"map\((string|any)\)|any", type_), f"{name}: use an object type"
        if type_.startswith("object("):
            assert "optional(" in type_, f"{name}: object fields should be optional() with defaults"


def test_enumerations_are_validated(terraform: hcl.Module) -> None:
    variables = terraform.variables()
    for name in ("environment", "log_level", "project_id", "name_prefix"):
        assert variables[name].get("validation"), f"variable {name} has no validation"
    condition = hcl.expression(variables["environment"]["validation"][0]["condition"])
    assert condition.startswith("contains(")


def test_every_output_is_described(terraform: hcl.Module) -> None:
    for name, output in terraform.outputs().items():
        assert str(output.get("description", "")).strip(), f"output {name} has no description"


def test_topology_names_are_spelled_only_in_topology_tf() -> None:
    """Any other file naming a topic or a results table literally could drift from shared/topology.py."""
    from shared import topology

    names = [topology.GCS_NOTIFICATIONS_TOPIC, topology.EXTRACT_REQUESTS_TOPIC, topology.TABLE_LOADED_TOPIC,
             topology.LEDGER_TABLE, topology.RECONCILIATION_TABLE, topology.VALIDATION_TABLE]
    for path in INFRA.glob("*.tf"):
        if path.name == "topology.tf":
            continue
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for name in names:
            assert f'"{name}"' not in text, f"{path.name} spells {name!r}: use local.topology"


def test_topology_tf_references_no_resource(terraform: hcl.Module) -> None:
    """topology.tf is evaluated without providers: it may read only variables, locals and files."""
    text = (INFRA / "topology.tf").read_text()
    assert not re.search(r"\b(google_[a-z0-9_]+|data)\.[a-z]", text)
    assert set(terraform.files["topology.tf"]) <= {"locals", "__comments__"}


def test_a_bad_config_stops_the_plan(terraform: hcl.Module) -> None:
    guard = terraform.resource("terraform_data", "config_guard")
    (precondition,) = hcl.one(guard["lifecycle"])["precondition"]
    assert hcl.expression(precondition["condition"]) == "length(local.config_problems) == 0"
    assert "config_problems" in precondition["error_message"]


def _code(path) -> str:  # type: ignore[no-untyped-def]
    """A .tf file without its comment lines (a comment may mention anything)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "//")))


def test_every_reference_names_something_defined(terraform: hcl.Module) -> None:
    """What `terraform validate` would catch first, without the provider it cannot download here."""
    text = "\n".join(_code(p) for p in INFRA.glob("*.tf"))
    defined_locals = set(terraform.locals())
    defined_vars = set(terraform.variables())
    resources = {(t, n) for t, n, _ in terraform.all_resources()}
    data = {(t, n) for _, block in terraform.blocks("data") for t, named in block.items() for n in named}
    for name in set(re.findall(r"\blocal\.([a-z_][a-z0-9_]*)", text)):
        assert name in defined_locals, f"local.{name} is not defined"
    for name in set(re.findall(r"\bvar\.([a-z_][a-z0-9_]*)", text)):
        assert name in defined_vars, f"var.{name} is not declared"
    for type_, name in set(re.findall(r"(?<![\w.])data\.(google_[a-z0-9_]+)\.([a-z_][a-z0-9_]*)", text)):
        assert (type_, name) in data, f"data.{type_}.{name} is not declared"
    for type_, name in set(re.findall(r"(?<![\w.\"/-])((?:google|terraform)_[a-z0-9_]+)\.([a-z_][a-z0-9_]*)", text)):
        assert (type_, name) in resources, f"{type_}.{name} is not declared"


def test_every_variable_and_local_is_used(terraform: hcl.Module) -> None:
    text = "\n".join(_code(p) for p in INFRA.glob("*.tf"))
    for name in terraform.variables():
        assert f"var.{name}" in text, f"variable {name} is never used"
    for name in terraform.locals():
        assert re.search(rf"\blocal\.{name}\b", text), f"local {name} is never used"
