"""cloudbuild.yaml: valid for Cloud Build, every step named, the deploy wired as documented."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import ROOT

CLOUDBUILD = ROOT / "cloudbuild.yaml"
STEPS = ["terraform-fmt", "lint-and-test", "package", "terraform-init", "terraform-plan", "terraform-apply",
         "smoke-check"]


@pytest.fixture(scope="module")
def build() -> dict[str, Any]:
    return yaml.safe_load(CLOUDBUILD.read_text())


def test_cloudbuild_matches_the_cloud_build_schema() -> None:
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.cloudbuild",
                           str(CLOUDBUILD)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_step_has_an_id_and_a_name(build: dict[str, Any]) -> None:
    ids = [step.get("id") for step in build["steps"]]
    assert all(ids) and all(step.get("name") for step in build["steps"])
    assert len(set(ids)) == len(ids), "step ids must be unique"
    assert ids == STEPS


def test_wait_for_names_earlier_steps(build: dict[str, Any]) -> None:
    seen: set[str] = set()
    for step in build["steps"]:
        for dependency in step.get("waitFor", []):
            assert dependency == "-" or dependency in seen, f"{step['id']} waits for {dependency}, not an earlier step"
        seen.add(step["id"])


def test_deploy_uses_the_substitutions(build: dict[str, Any]) -> None:
    assert {"_PROJECT_ID", "_ENVIRONMENT", "_TF_STATE_BUCKET"} <= set(build["substitutions"])
    assert build["options"]["automapSubstitutions"] is True, "scripts read substitutions as environment variables"
    steps = {step["id"]: step for step in build["steps"]}
    assert "make test" in steps["lint-and-test"]["script"]
    assert "make package" in steps["package"]["script"]
    init = steps["terraform-init"]["script"]
    assert "-chdir=infra init" in init and "${_TF_STATE_BUCKET}" in init
    plan = steps["terraform-plan"]["script"]
    assert "${_PROJECT_ID}" in plan and "${_ENVIRONMENT}" in plan and "-out=tfplan" in plan
    assert "apply -input=false -lock-timeout=5m tfplan" in steps["terraform-apply"]["script"]
    assert "smoke-check.sh" in steps["smoke-check"]["script"]


@pytest.mark.parametrize("script", sorted((ROOT / "infra" / "cloudbuild").glob("*.sh")), ids=lambda p: p.name)
def test_build_scripts_are_valid_bash(script: Path) -> None:
    bash = shutil.which("bash")
    assert bash
    done = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_step_scripts_are_valid_shell(build: dict[str, Any], tmp_path: Path) -> None:
    for step in build["steps"]:
        script = tmp_path / f"{step['id']}.sh"
        script.write_text(step["script"])
        shell = "bash" if "bash" in step["script"].splitlines()[0] else "sh"
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{step['id']}: {done.stderr}"
