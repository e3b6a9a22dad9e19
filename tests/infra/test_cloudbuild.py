"""cloudbuild.yaml: valid for Cloud Build, every step named, the deploy wired as documented."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.conftest import ROOT

CLOUDBUILD = ROOT / "cloudbuild.yaml"
STEPS = ["terraform-fmt", "lint-and-test", "package", "terraform-init", "terraform-tfvars", "terraform-plan",
         "terraform-apply", "smoke-check"]


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
    assert {"_PROJECT_ID", "_ENVIRONMENT", "_TF_STATE_BUCKET", "_TFVARS_URI"} <= set(build["substitutions"])
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


def _steps(build: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in build["steps"]}


def _run_step(step: dict[str, Any], workspace: Path, stubs: dict[str, str],
              **substitutions: str) -> subprocess.CompletedProcess[str]:
    """Runs a step's script in `workspace` as Cloud Build would (substitutions as environment variables),
    with the commands in `stubs` replaced by scripts that log their arguments to <workspace>/calls."""
    bin_dir = workspace / ".stubs"
    bin_dir.mkdir(exist_ok=True)
    for command, body in stubs.items():
        stub = bin_dir / command
        stub.write_text(f'#!/bin/sh\necho "{command} $*" >> "{workspace}/calls"\n{body}\n')
        stub.chmod(0o755)
    script = workspace / f"{step['id']}.sh"
    script.write_text(step["script"])
    shell = "bash" if "bash" in step["script"].splitlines()[0] else "sh"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "_PROJECT_ID": "acme-matrix-dev", "_ENVIRONMENT": "dev",
           "_REGION": "us-central1", "_CONFIG_PATH": "", "_TFVARS_URI": "", **substitutions}
    return subprocess.run([shell, str(script)], cwd=workspace, env=env, capture_output=True, text=True, timeout=60)


def _calls(workspace: Path) -> list[str]:
    calls = workspace / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


GCLOUD_CP = 'printf \'extractor = { agent_principals = ["principal://x"] }\\n\' > "$4"'
TFVARS = Path("infra/environments/dev/terraform.tfvars")


def test_the_tfvars_step_fetches_the_environment_values_from_tfvars_uri(build: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    (tmp_path / TFVARS.parent).mkdir(parents=True)
    uri = "gs://acme-matrix-dev-tf-state/matrix-sync/dev/terraform.tfvars"
    done = _run_step(_steps(build)["terraform-tfvars"], tmp_path, {"gcloud": GCLOUD_CP}, _TFVARS_URI=uri)
    assert done.returncode == 0, done.stderr
    assert _calls(tmp_path) == [f"gcloud storage cp {uri} {TFVARS}"]
    assert "agent_principals" in (tmp_path / TFVARS).read_text()


def test_without_tfvars_the_build_stops_instead_of_planning_defaults(build: dict[str, Any], tmp_path: Path) -> None:
    """A clean clone has no terraform.tfvars (gitignored): planning without it would revert what it sets."""
    (tmp_path / TFVARS.parent).mkdir(parents=True)
    steps = _steps(build)
    fetch = _run_step(steps["terraform-tfvars"], tmp_path, {"gcloud": GCLOUD_CP})
    assert fetch.returncode != 0 and "_TFVARS_URI" in fetch.stderr, fetch.stderr
    plan = _run_step(steps["terraform-plan"], tmp_path, {"terraform": ""})
    assert plan.returncode != 0 and "_TFVARS_URI" in plan.stderr, plan.stderr
    assert _calls(tmp_path) == [], "nothing fetched, nothing planned"
    assert "terraform-tfvars" in steps["terraform-plan"]["waitFor"]


def test_the_plan_uses_the_environment_tfvars(build: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / TFVARS.parent).mkdir(parents=True)
    (tmp_path / TFVARS).write_text('project_id = "acme-matrix-dev"\n')
    steps = _steps(build)
    assert _run_step(steps["terraform-tfvars"], tmp_path, {"gcloud": "exit 1"}).returncode == 0, "a local file will do"
    done = _run_step(steps["terraform-plan"], tmp_path, {"terraform": ""})
    assert done.returncode == 0, done.stderr
    (call,) = _calls(tmp_path)
    assert call.startswith("terraform -chdir=infra plan ") and "-var-file=environments/dev/terraform.tfvars" in call
    assert "-out=tfplan" in call and "-var=project_id=acme-matrix-dev" in call


def test_the_tests_run_with_terraform_and_fail_rather_than_skip(build: dict[str, Any]) -> None:
    """tests/infra skips what needs terraform unless CI is set: the build installs it and sets CI."""
    step = _steps(build)["lint-and-test"]
    env = dict(line.split("=", 1) for line in step.get("env", []))
    assert env.get("CI") == "true"
    images = {s["name"] for s in build["steps"] if s["name"].startswith("hashicorp/terraform:")}
    (image,) = images
    assert env["TERRAFORM_VERSION"].startswith(image.partition(":")[2] + "."), "the terraform the deploy steps run"
    assert re.fullmatch(r"[0-9a-f]{64}", env["TERRAFORM_SHA256"])
    script = step["script"]
    release = "https://releases.hashicorp.com/terraform/${TERRAFORM_VERSION}/"
    assert release + "terraform_${TERRAFORM_VERSION}_linux_amd64.zip" in script
    assert 'echo "${TERRAFORM_SHA256}  /tmp/terraform.zip" | sha256sum -c -' in script
    assert script.index("sha256sum -c") < script.index('extract("terraform"') < script.index("make test")
