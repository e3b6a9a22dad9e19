"""One source of integer ranges: a generated row model bounds each integer column exactly as the
validator's `range:` check does for that source, so a value one accepts the other cannot fail."""
from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared.models import build_model, model_source, row_validator
from shared.schema import Column, TableSchema
from shared.validator import checks
from shared.validator.thresholds import Thresholds
from tests.unit.test_validate_rules import manifest

INTEGERS = TableSchema(columns=[
    Column(name="id", bq_name="id", source_type="bigint", bq_type="INT64", nullable=False),
    Column(name="small", bq_name="small", source_type="smallint", bq_type="INT64"),
    Column(name="whole", bq_name="whole", source_type="integer", bq_type="INT64"),
    Column(name="tiny", bq_name="tiny", source_type="tinyint", bq_type="INT64"),
    Column(name="plain", bq_name="plain", source_type="int", bq_type="INT64"),
    Column(name="wide", bq_name="wide", source_type="int unsigned", bq_type="INT64"),
], key=["id"])
DIALECTS = ["postgresql", "mssql", "mysql", "mariadb", "sqlite"]


def _validator_bounds(dialect: str) -> dict[str, tuple[int, int]]:
    """Each integer column's bounds as the validator's range probe states them."""
    probes = checks._probes(manifest(schema=INTEGERS, dialect=dialect), Thresholds())
    found = {}
    for probe in probes:
        if probe.name.startswith("range:"):
            low, high = probe.result(dict.fromkeys(probe.sql, 0)).expected.split(" .. ")
            found[probe.name.removeprefix("range:")] = (int(low), int(high))
    return found


def _generated(dialect: str) -> type[BaseModel]:
    namespace: dict[str, Any] = {"__name__": "generated_integers"}
    exec(compile(model_source(INTEGERS, "Integers", "public.integers", dialect), "<generated>", "exec",  # noqa: S102
                 dont_inherit=True), namespace)
    return namespace["Integers"]


def _accepts(model: type[BaseModel], column: str, value: int) -> bool:
    try:
        model.model_validate({"id": 1, column: value})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("dialect", DIALECTS)
def test_models_and_range_checks_bound_integers_alike(dialect: str) -> None:
    bounds = _validator_bounds(dialect)
    for model in (build_model(INTEGERS, dialect=dialect), _generated(dialect)):
        for column in ("small", "whole", "tiny", "plain", "wide"):
            low, high = bounds.get(column, (-(2**63), 2**63 - 1))
            assert _accepts(model, column, low) and _accepts(model, column, high), (dialect, column)
            assert not _accepts(model, column, low - 1) and not _accepts(model, column, high + 1), (dialect, column)


def test_postgresql_smallint_refuses_what_the_validator_would_fail() -> None:
    assert _validator_bounds("postgresql") == {"small": (-32768, 32767), "whole": (-(2**31), 2**31 - 1)}
    model = _generated("postgresql")
    assert not _accepts(model, "small", 40000) and _accepts(model, "small", 32767)
    assert row_validator(INTEGERS, "postgresql")((1, 40000, None, None, None, None)) is not None
    source = model_source(INTEGERS, "Integers", "public.integers", "postgresql")
    assert "small: Annotated[int, Field(ge=-32768, le=32767)] | None = None" in source
    assert "id: Int64" in source  # bigint: only INT64 bounds it


def test_without_a_dialect_integers_keep_the_int64_bounds() -> None:
    source = model_source(INTEGERS, "Integers", "public.integers")
    assert "small: Int64 | None = None" in source
    assert _accepts(build_model(INTEGERS), "small", 40000)
