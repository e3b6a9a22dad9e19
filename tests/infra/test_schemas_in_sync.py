"""infra/schemas/*.json are exactly what the Python fields give (python infra/schemas/generate.py)."""
from __future__ import annotations

import importlib.util
import json
from types import ModuleType

import pytest

from shared import ledger, results
from shared.topology import LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE
from tests.infra.conftest import INFRA


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_schemas_generate", INFRA / "schemas" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", sorted(_generator().expected()), ids=lambda p: p.name)
def test_schema_file_equals_the_python_fields(path) -> None:  # type: ignore[no-untyped-def]
    expected = _generator().expected()[path]
    assert path.exists(), f"{path.name} missing: run python infra/schemas/generate.py"
    assert path.read_text() == expected, f"{path.name} is stale: run python infra/schemas/generate.py"


@pytest.mark.parametrize("name, fields", [
    (LEDGER_TABLE, ledger.FIELDS),
    (RECONCILIATION_TABLE, results.RECONCILIATION_FIELDS),
    (VALIDATION_TABLE, results.VALIDATION_FIELDS),
])
def test_schema_keeps_every_column_name_and_mode(name: str, fields: list) -> None:  # type: ignore[type-arg]
    schema = json.loads((INFRA / "schemas" / f"{name}.json").read_text())
    assert [(c["name"], c["mode"]) for c in schema] == [(f.name, f.mode) for f in fields]
    legacy = {"INT64": "INTEGER", "BOOL": "BOOLEAN", "FLOAT64": "FLOAT"}
    assert [c["type"] for c in schema] == [legacy.get(f.field_type, f.field_type) for f in fields]


def test_no_stray_schema_files() -> None:
    assert {p.stem for p in (INFRA / "schemas").glob("*.json")} == {LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE}
