"""The validator against the BigQuery table as it is now: a column or the whole table gone (or a
column retyped) fails `schema_drift` and skips the checks that need it instead of crashing the run;
a profile query BigQuery refuses becomes failed checks; skipping every check still leaves a result."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlglot
from google.api_core import exceptions as gexc
from sqlglot.errors import ErrorLevel

from shared.validator import checks
from shared.validator.handler import result_rows
from shared.validator.live_schema import LiveSchema
from shared.validator.thresholds import CHECKS, COLUMN_CHECKS, Thresholds
from tests.unit.test_validate_rules import SCHEMA, manifest

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
NO_LEDGER = Thresholds(skip=["freshness"])  # freshness reads the ledger in BigQuery


def _live(*, drop: tuple[str, ...] = (), retype: dict[str, str] | None = None) -> LiveSchema:
    types = {c.bq_name.lower(): c.bq_type for c in SCHEMA.columns} | {"_key_hash": "STRING", "_row_hash": "STRING"}
    types |= retype or {}
    return LiveSchema({name: kind for name, kind in types.items() if name not in drop})


class _FakeBigQuery:
    """Stands in for the profile query: records the SQL, answers 0 for every alias."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.sql: list[str] = []
        self.refuse = refuse

    def run(self, _project: str, sql: str, params: object = (), stats: object = None) -> list[dict[str, object]]:
        self.sql.append(sql)
        if self.refuse is not None:
            raise self.refuse
        return [dict.fromkeys(re.findall(r" AS (\w+)", sql), 0)]


@pytest.fixture
def fake_bigquery(monkeypatch: pytest.MonkeyPatch) -> _FakeBigQuery:
    fake = _FakeBigQuery()
    monkeypatch.setattr(checks.bq_jobs, "run", fake.run)
    return fake


def _checks_with(monkeypatch: pytest.MonkeyPatch, live: LiveSchema | None,
                 thresholds: Thresholds = NO_LEDGER) -> dict[str, checks.CheckResult]:
    monkeypatch.setattr(checks, "read_live_schema", lambda _table_id: live)
    return {c.check_name: c for c in checks.run_checks(manifest(), thresholds, now=NOW)}


def test_a_dropped_column_fails_schema_drift_and_skips_only_its_checks(
        monkeypatch: pytest.MonkeyPatch, fake_bigquery: _FakeBigQuery) -> None:
    found = _checks_with(monkeypatch, _live(drop=("copies", "amount")))
    drift = found["schema_drift"]
    assert not drift.passed and drift.observed == "missing: amount, copies"
    for name in ("not_null:copies", "range:copies", "decimal:amount"):
        assert found[name].passed and found[name].observed.startswith("skipped: column")
        assert "missing in BigQuery" in found[name].observed
    assert found["row_count"].observed == "0" and found["key_unique"].observed == "0 duplicated key(s)"
    assert found["max_length:code"].passed and found["range:at"].passed and found["quarantined_rows"].passed
    (sql,) = fake_bigquery.sql
    assert "`copies`" not in sql and "`amount`" not in sql and "`code`" in sql
    sqlglot.parse_one(sql, read="bigquery", error_level=ErrorLevel.RAISE)


def test_a_retyped_column_skips_its_checks_but_a_lossless_widening_does_not(
        monkeypatch: pytest.MonkeyPatch, fake_bigquery: _FakeBigQuery) -> None:
    found = _checks_with(monkeypatch, _live(retype={"copies": "STRING", "id": "NUMERIC"}))
    assert not found["schema_drift"].passed and found["schema_drift"].observed == "type: copies INT64->STRING"
    assert found["range:copies"].observed == "skipped: column copies is STRING in BigQuery, not INT64"
    assert found["range:id"].observed.startswith("0 row(s) outside")  # INT64 -> NUMERIC keeps its checks
    assert "`copies`" not in fake_bigquery.sql[0]


def test_a_missing_key_column_skips_the_key_checks(monkeypatch: pytest.MonkeyPatch,
                                                   fake_bigquery: _FakeBigQuery) -> None:
    found = _checks_with(monkeypatch, _live(drop=("id",)))
    assert found["key_unique"].observed == found["key_not_null"].observed == "skipped: column id missing in BigQuery"
    assert found["row_count"].observed == "0"


def test_a_missing_table_fails_schema_drift_without_a_query(monkeypatch: pytest.MonkeyPatch,
                                                            fake_bigquery: _FakeBigQuery) -> None:
    found = _checks_with(monkeypatch, None)
    assert not found["schema_drift"].passed and found["schema_drift"].observed == "table does not exist"
    assert [name for name, c in found.items() if not c.passed] == ["schema_drift"]
    assert found["row_count"].observed == "skipped: table missing in BigQuery"
    assert "quarantined_rows" in found and fake_bigquery.sql == []


def test_a_profile_query_bigquery_refuses_fails_its_checks_instead_of_raising(
        monkeypatch: pytest.MonkeyPatch, fake_bigquery: _FakeBigQuery) -> None:
    fake_bigquery.refuse = gexc.BadRequest('Binder Error: Referenced column "copies" not found')
    found = _checks_with(monkeypatch, _live())
    assert not found["row_count"].passed and not found["not_null:copies"].passed
    assert found["row_count"].observed == "not checked: BigQuery refused the profile query"
    assert "Referenced column" in found["row_count"].message
    assert found["schema_drift"].passed and found["quarantined_rows"].passed


def test_skipping_every_check_still_records_one_result() -> None:
    everything = Thresholds(skip=[*CHECKS, *(f"{kind}:" for kind in COLUMN_CHECKS)])
    (only,) = checks.run_checks(manifest(), everything, now=NOW)  # no BigQuery: nothing to ask it
    assert (only.check_name, only.passed, only.observed) == (checks.ALL_SKIPPED, True, "skipped: every check")
    assert "row_count" in only.message
    (row,) = result_rows(manifest(), [only], NOW)
    assert row["run_id"] == manifest().run_id and row["passed"]
