"""A config naming source.password_secret: Terraform creates that secret and lets the extractor's
identity read that one secret, nothing broader, and the code accepts the same file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import load_config
from tests.infra.conftest import EXAMPLE_CONFIG, EXAMPLE_PROJECT, Evaluate

MODES = {"extractor-agent": ({"deploy_as_function": False}, "agent"),
         "extractor-function": ({"deploy_as_function": True}, "extractor")}
SECRET = f"projects/{EXAMPLE_PROJECT}/secrets/matrix-sync-source-password/versions/latest"


def config_with_secret(tmp_path: Path, secret: str) -> str:
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    raw["source"]["password_secret"] = secret
    path = tmp_path / "matrix-sync.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_extractor_may_read_the_password_secret_and_no_other_source_secret(
        mode: str, tmp_path: Path, evaluate: Evaluate) -> None:
    extractor, account = MODES[mode]
    path = config_with_secret(tmp_path, SECRET)
    assert load_config(path, environ={}).source.password_secret == SECRET
    variables: dict[str, Any] = {"config_path": path, "extractor": extractor}
    assert evaluate("local.config_problems", **variables) == []
    grants = evaluate("local.grant_list", **variables)
    secret_grants = {(g["account"], g["role"], g["scope"]) for g in grants if g["scope"].startswith("secret:")}
    accessor = "roles/secretmanager.secretAccessor"
    expected = {(account, accessor, "secret:source-password")}
    if extractor["deploy_as_function"]:
        expected.add((account, accessor, "secret:config"))
    assert secret_grants == expected
    assert all(g["role"] != accessor for g in grants if not g["scope"].startswith("secret:")), "not project-wide"
    assert "source-password" in evaluate("local.secrets", **variables)
    assert "source-url" not in evaluate("local.secrets", **variables)
    assert evaluate("local.extractor_secret_env", **variables) == {}


@pytest.mark.parametrize("secret", [
    "projects/acme-other-project/secrets/matrix-sync-source-password/versions/latest",
    f"projects/{EXAMPLE_PROJECT}/secrets/some-other-secret/versions/3",
])
def test_a_secret_terraform_does_not_create_stops_the_plan(secret: str, tmp_path: Path, evaluate: Evaluate) -> None:
    problems = evaluate("local.config_problems", config_path=config_with_secret(tmp_path, secret))
    assert len(problems) == 1 and "source.password_secret must name a version" in problems[0], problems
