"""Every output can be computed whichever way the deployment is configured: one that indexes a
resource made for only some configs (`for_each` over a conditional local) must be guarded, or
`terraform plan` stops with "Invalid index".

Outputs read resources, which `terraform console` cannot evaluate without a provider: each indexed
resource is replaced by a map with exactly the keys its `for_each` gives (evaluated from
topology.tf), so an unguarded index fails here as it would in the plan."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import hcl
from tests.infra.conftest import Evaluate
from tests.infra.test_source_password_secret import SECRET, config_with_secret

# resource.name[key].attribute: an output's way to read one instance of a for_each resource
INDEXED = re.compile(r"\b(google_[a-z0-9_]+)\.([a-z0-9_]+)\[([^\]]+)\]\.([a-z0-9_]+)")
DEPLOYMENTS = {
    "agent, source-url secret": {"extractor": {"deploy_as_function": False}},
    "function, source-url secret": {"extractor": {"deploy_as_function": True}},
    "agent, password secret": {"extractor": {"deploy_as_function": False}, "password_secret": True},
    "function, password secret": {"extractor": {"deploy_as_function": True}, "password_secret": True},
}


def indexed_outputs(terraform: hcl.Module) -> dict[str, str]:
    """Output name -> its value with every indexed resource read from a stand-in of its instances."""
    found = {}
    for name, output in terraform.outputs().items():
        value = hcl.expression(output["value"])
        if INDEXED.search(value):
            found[name] = INDEXED.sub(lambda match: _stand_in(terraform, match), value)
    return found


def _stand_in(terraform: hcl.Module, match: re.Match[str]) -> str:
    type_, name, key, _attribute = match.groups()
    for_each = terraform.resource(type_, name).get("for_each")
    assert for_each is not None, f"{type_}.{name} is indexed by an output but has no for_each"
    instances = hcl.expression(for_each)
    return f'{{ for k in try(keys({instances}), tolist({instances})) : k => "{type_}.{name}[${{k}}]" }}[{key}]'


def variables_for(deployment: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    variables = {"extractor": deployment["extractor"]}
    if deployment.get("password_secret"):
        variables["config_path"] = config_with_secret(tmp_path, SECRET)
    return variables


def test_outputs_that_read_one_instance_are_found(terraform: hcl.Module) -> None:
    assert {"source_url_secret", "source_password_secret", "extractor_agent_service_account",
            "extractor_pull_subscription"} <= set(indexed_outputs(terraform))


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_every_output_reading_one_instance_has_a_value_in_every_deployment(
        deployment: str, terraform: hcl.Module, evaluate: Evaluate, tmp_path: Path) -> None:
    variables = variables_for(DEPLOYMENTS[deployment], tmp_path)
    for name, expression in indexed_outputs(terraform).items():
        evaluate(expression, **variables)  # TerraformError ("Invalid index") where the instance is missing


@pytest.mark.parametrize("deployment", sorted(DEPLOYMENTS))
def test_the_source_secret_outputs_name_the_secret_that_exists(
        deployment: str, terraform: hcl.Module, evaluate: Evaluate, tmp_path: Path) -> None:
    variables = variables_for(DEPLOYMENTS[deployment], tmp_path)
    outputs = indexed_outputs(terraform)
    url = evaluate(outputs["source_url_secret"], **variables)
    password = evaluate(outputs["source_password_secret"], **variables)
    if DEPLOYMENTS[deployment].get("password_secret"):
        assert (url, password) == (None, 'google_secret_manager_secret.secret[source-password]')
    else:
        assert (url, password) == ('google_secret_manager_secret.secret[source-url]', None)
