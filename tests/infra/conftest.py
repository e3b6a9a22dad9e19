"""Offline checks of infra/ and cloudbuild.yaml: nothing here reaches Google Cloud.

Three kinds of evidence: the .tf files parsed with python-hcl2 (what each resource is wired to);
topology.tf evaluated by terraform itself (`terraform console` needs no provider), so the names,
subscriptions and grants are the values Terraform would use; and checkov, run once per session.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.infra import hcl

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
EXAMPLE_CONFIG = INFRA / "environments" / "dev" / "matrix-sync.yaml"
EXAMPLE_PROJECT = "acme-matrix-dev"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matrix-sync"
TERRAFORM_ENV = {**os.environ, "TF_CLI_CONFIG_FILE": "/dev/null", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}

Evaluate = Callable[..., Any]


@pytest.fixture(scope="session")
def terraform() -> hcl.Module:
    return hcl.load_module(INFRA)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    found = shutil.which("terraform")
    if found is None:
        message = "terraform is not installed: the evaluation of topology.tf and `terraform fmt` need it"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip these)")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def evaluate(terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Evaluate:
    """evaluate(expression, var_file=None, **variables) -> the value Terraform gives `expression` in
    topology.tf, with variables.tf's types, defaults and validations (a failed validation raises
    TerraformError). Without var_file, the example environment's project, environment and config."""
    workdir = tmp_path_factory.mktemp("topology")
    for name in ("variables.tf", "topology.tf"):
        shutil.copy(INFRA / name, workdir / name)
    shutil.copytree(INFRA / "environments", workdir / "environments")  # relative config_path as in infra/
    subprocess.run([terraform_bin, "init", "-backend=false", "-input=false", "-no-color"], cwd=workdir,
                   env=TERRAFORM_ENV, check=True, capture_output=True, timeout=60)

    cache: dict[str, Any] = {}

    def run(expression: str, var_file: Path | None = None, **variables: Any) -> Any:
        key = json.dumps([expression, str(var_file), variables], sort_keys=True)
        if key not in cache:
            cache[key] = console(expression, var_file, variables)
        return json.loads(json.dumps(cache[key]))  # a copy: callers may change what they get

    def console(expression: str, var_file: Path | None, variables: dict[str, Any]) -> Any:
        defaults = {"project_id": EXAMPLE_PROJECT, "environment": "dev", "config_path": str(EXAMPLE_CONFIG)}
        values = variables if var_file else {**defaults, **variables}
        args = [f"-var-file={var_file}"] if var_file else []
        args += [f"-var={name}={value if isinstance(value, str) else json.dumps(value)}" for name, value in values.items()]
        done = subprocess.run([terraform_bin, "console", "-no-color", *args], cwd=workdir, env=TERRAFORM_ENV,
                              input=f"jsonencode({expression})\n", capture_output=True, text=True, timeout=60)
        # console reports invalid variables on stderr and may still exit 0
        if done.returncode != 0 or "Error:" in done.stderr:
            raise TerraformError(done.stderr.strip() or done.stdout.strip())
        return json.loads(json.loads(done.stdout.strip().splitlines()[-1]))

    return run


class TerraformError(RuntimeError):
    """terraform refused the variables or the expression; the message is its own."""


@pytest.fixture(scope="session")
def checkov_report() -> dict[str, Any]:
    """checkov's JSON report on infra/, computed once per session (it takes ~10 s)."""
    checkov = os.environ.get("CHECKOV") or str(_checkov_venv() / "bin" / "checkov")
    # without --quiet: the JSON then lists passed and skipped checks too
    done = subprocess.run([checkov, "-d", str(INFRA), "--framework", "terraform", "--skip-download", "--compact",
                           "-o", "json"], capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 1):  # 1: some check failed, reported in the JSON
        raise RuntimeError(f"checkov failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def _checkov_venv() -> Path:
    """A virtualenv holding infra/requirements-checkov.txt, made once per machine (~40 s) and reused."""
    requirements = INFRA / "requirements-checkov.txt"
    key = hcl.digest(requirements.read_bytes())
    return ensure_venv(CACHE / f"checkov-{key}", ["-r", str(requirements)])


def ensure_venv(path: Path, pip_args: list[str]) -> Path:
    """A virtualenv at `path` with exactly what `pip install *pip_args` brings; reused once complete."""
    marker = path / ".complete"
    if marker.exists():
        return path
    if path.exists():
        shutil.rmtree(path)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *pip_args], check=True, capture_output=True, timeout=900)
    marker.write_text(" ".join(pip_args) + "\n")
    return path


@pytest.fixture(scope="session")
def base_python() -> str:
    """The interpreter the project's virtualenv was made from: new virtualenvs start from it, clean."""
    return getattr(sys, "_base_executable", sys.executable)
