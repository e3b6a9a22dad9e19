"""The validator's thresholds (MATRIX_VALIDATION) and the reconciler's options (MATRIX_RECONCILE) are
set from Terraform: each document reaches its own function only, as the code reads it, and is left
unset (the code's defaults) unless given."""
from __future__ import annotations

import json

import pytest

from shared.reconciler.options import ENV_VARIABLE as RECONCILE_VARIABLE
from shared.reconciler.options import options_for
from shared.validator.thresholds import ENV_VARIABLE as VALIDATION_VARIABLE
from shared.validator.thresholds import thresholds_for
from tests.infra import hcl
from tests.infra.conftest import Evaluate, TerraformError

VALIDATION = json.dumps({"default": {"freshness_max_age_s": 7200}, "tables": {"payments": {"max_quarantined_rows": 5}}})
RECONCILE = json.dumps({"default": {"max_repair_keys": 5000}, "tables": {"customers": {"deep": True}}})
SETTINGS = {"validation_settings": (VALIDATION_VARIABLE, "validator"),
            "reconcile_settings": (RECONCILE_VARIABLE, "reconciler")}
FUNCTION = {"extractor": {"deploy_as_function": True}}


def test_without_settings_no_function_gets_either_variable(evaluate: Evaluate) -> None:
    for name, env in evaluate("local.function_env", **FUNCTION).items():
        assert not {VALIDATION_VARIABLE, RECONCILE_VARIABLE} & set(env), name


def test_each_document_reaches_its_function_only_as_the_code_reads_it(evaluate: Evaluate) -> None:
    environments = evaluate("local.function_env", validation_settings=VALIDATION, reconcile_settings=RECONCILE,
                            **FUNCTION)
    holders = {variable: sorted(name for name, env in environments.items() if variable in env)
               for variable in (VALIDATION_VARIABLE, RECONCILE_VARIABLE)}
    assert holders == {VALIDATION_VARIABLE: ["validator"], RECONCILE_VARIABLE: ["reconciler"]}
    validation = environments["validator"][VALIDATION_VARIABLE]
    reconcile = environments["reconciler"][RECONCILE_VARIABLE]
    assert thresholds_for("acme.matrix.payments", validation).max_quarantined_rows == 5
    assert thresholds_for("acme.matrix.payments", validation).freshness_max_age_s == 7200
    assert options_for("acme.matrix.customers", reconcile).deep is True
    assert options_for("acme.matrix.orders", reconcile).max_repair_keys == 5000


@pytest.mark.parametrize("variable", sorted(SETTINGS))
@pytest.mark.parametrize("document", ["not json", "[1, 2]", '{"defaults": {}}'])
def test_a_document_the_code_could_not_read_stops_the_plan(variable: str, document: str, evaluate: Evaluate) -> None:
    with pytest.raises(TerraformError, match=f"{variable} must be empty or a JSON object"):
        evaluate("local.function_env", **{variable: document})


@pytest.mark.parametrize("variable", sorted(SETTINGS))
def test_the_settings_are_typed_documented_and_unset_by_default(variable: str, terraform: hcl.Module) -> None:
    declared = terraform.variables()[variable]
    assert (declared["type"], declared["default"]) == ("string", "")
    assert SETTINGS[variable][0] in declared["description"]
    readme = (terraform.directory / "README.md").read_text()
    assert f"`{variable}`" in readme and f"`{SETTINGS[variable][0]}`" in readme
