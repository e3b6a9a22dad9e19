"""The reconciler and the validator read the ledger's newest applied run in their main query (the
fingerprint, the profile), not in jobs of their own: a newer applied snapshot still makes the run
`superseded` (nothing diagnosed, repaired or checked), and the validator reads the ledger row once,
for that and for `freshness` (no emulator needed: the query is answered by a fake)."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping

import pytest
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc

from shared import results
from shared.loaded_event import LoadedSnapshot
from shared.reconciler import fingerprint, reconcile
from shared.reconciler import handler as reconciler_handler
from shared.validator import checks
from shared.validator import handler as validator_handler
from shared.validator.live_schema import LiveSchema
from shared.validator.thresholds import Thresholds
from tests.sql_parse import strict
from tests.unit.test_validate_rules import SCHEMA, manifest

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
RUN = manifest().run_id
NEWER = "20261125T111111000001Z-fedcba"


class _FakeBigQuery:
    """Answers the stage's one query: 0 for every count, the matching fingerprint, and `latest` as
    the ledger's newest applied row; counts separate reads of the ledger."""

    def __init__(self, latest: Mapping[str, object] | None, refuse: Exception | None = None) -> None:
        self.latest = dict(latest) if latest is not None else None
        self.refuse = refuse
        self.sql: list[str] = []
        self.params: list[object] = []
        self.ledger_reads = 0

    def run(self, _project: str, sql: str, params: object = (), stats: object = None) -> list[dict[str, object]]:
        self.sql.append(sql)
        self.params.append(list(params))  # type: ignore[call-overload]
        if self.refuse is not None:
            raise self.refuse
        values: dict[str, object] = dict.fromkeys(re.findall(r" AS (\w+)", sql), 0)
        values |= {"row_count": 3, "xor60": 1, "sum32": 2}  # the manifest's count and fingerprint
        if "latest_applied" in sql:
            values["latest_applied"] = self.latest
        return [values]

    def latest_applied(self, _project: str, _dataset: str, _table_id: str, *,
                       since_truncate: bool = False) -> dict[str, object] | None:
        self.ledger_reads += 1
        return self.latest


def _live() -> LiveSchema:
    types = {c.bq_name.lower(): c.bq_type for c in SCHEMA.columns} | {"_key_hash": "STRING", "_row_hash": "STRING"}
    return LiveSchema(types)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> _FakeBigQuery:
    answer = _FakeBigQuery({"run_id": RUN, "recorded_at": NOW - dt.timedelta(seconds=42)})
    monkeypatch.setattr(checks.bq_jobs, "run", answer.run)
    monkeypatch.setattr(fingerprint.bq_jobs, "run", answer.run)
    monkeypatch.setattr(checks.ledger, "latest_applied", answer.latest_applied)
    monkeypatch.setattr(checks, "read_live_schema", lambda _table_id: _live())
    return answer


def _by_name(found: list[checks.CheckResult]) -> dict[str, checks.CheckResult]:
    return {c.check_name: c for c in found}


def test_the_validator_reads_the_ledger_in_its_profile_query_and_uses_the_row_for_freshness(
        fake: _FakeBigQuery) -> None:
    found = _by_name(checks.run_checks(manifest(), Thresholds(freshness_max_age_s=60), now=NOW, only_if_latest=True))
    assert fake.ledger_reads == 0
    (sql,) = fake.sql
    assert "._sync_ledger`" in sql and "AS latest_applied" in sql
    strict(sql)
    (params,) = fake.params
    assert [(p.name, p.value) for p in params] == [("ledger_table_id", manifest().target.table_id)]
    assert found["freshness"].passed and found["freshness"].observed == "42 s since the last load"
    assert found["freshness"].message == f"last applied run {RUN}"
    assert found["row_count"].passed and "superseded" not in found


def test_a_stale_row_never_passes_freshness(fake: _FakeBigQuery) -> None:
    found = _by_name(checks.run_checks(manifest(), Thresholds(freshness_max_age_s=41), now=NOW, only_if_latest=True))
    assert not found["freshness"].passed and found["freshness"].observed == "42 s since the last load"


def test_a_newer_applied_run_in_the_profile_query_makes_the_one_result_superseded(fake: _FakeBigQuery) -> None:
    fake.latest = {"run_id": NEWER, "recorded_at": NOW}
    assert checks.run_checks(manifest(), now=NOW, only_if_latest=True) == [checks.superseded_result()]
    assert fake.ledger_reads == 0 and len(fake.sql) == 1
    superseded = checks.superseded_result()
    assert (superseded.check_name, superseded.passed, superseded.observed, superseded.message) == (
        "superseded", True, "newer snapshot applied", "checks skipped")
    # the operator's validate (not only_if_latest) checks the table whatever the ledger says
    assert "superseded" not in _by_name(checks.run_checks(manifest(), now=NOW))


def test_no_applied_run_is_not_superseded_and_fails_freshness(fake: _FakeBigQuery) -> None:
    fake.latest = None
    found = _by_name(checks.run_checks(manifest(), now=NOW, only_if_latest=True))
    assert "superseded" not in found and fake.ledger_reads == 0
    assert not found["freshness"].passed and found["freshness"].observed == "never loaded"


@pytest.mark.parametrize("case", ["table missing", "query refused", "every probe skipped"])
def test_without_a_profile_query_the_ledger_is_read_once_on_its_own(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeBigQuery, case: str) -> None:
    thresholds = Thresholds()
    if case == "table missing":
        monkeypatch.setattr(checks, "read_live_schema", lambda _table_id: None)
    elif case == "query refused":
        fake.refuse = gexc.BadRequest("Referenced column not found")
    else:
        thresholds = Thresholds(skip=["row_count", "key_unique", "key_not_null", "not_null:", "max_length:",
                                      "decimal:", "range:"])
    fake.latest = {"run_id": RUN, "recorded_at": NOW - dt.timedelta(seconds=5)}
    found = _by_name(checks.run_checks(manifest(), thresholds, now=NOW, only_if_latest=True))
    assert fake.ledger_reads == 1 and found["freshness"].observed == "5 s since the last load"
    fake.latest = {"run_id": NEWER, "recorded_at": NOW}
    assert checks.run_checks(manifest(), thresholds, now=NOW, only_if_latest=True) == [checks.superseded_result()]
    assert fake.ledger_reads == 2


def test_without_freshness_or_only_if_latest_the_ledger_is_not_read(fake: _FakeBigQuery) -> None:
    found = _by_name(checks.run_checks(manifest(), Thresholds(skip=["freshness"]), now=NOW))
    assert "freshness" not in found and fake.ledger_reads == 0
    assert "_sync_ledger" not in fake.sql[0] and fake.params == [[]]


@pytest.mark.parametrize("deep", [False, True])
def test_the_fingerprint_query_reads_the_ledger_when_asked(fake: _FakeBigQuery, deep: bool) -> None:
    comparison = fingerprint.compare_with_snapshot(manifest(), deep=deep, with_ledger=True)
    assert comparison.clean and not comparison.superseded
    (sql,) = fake.sql
    assert "._sync_ledger`" in sql
    strict(sql)
    fake.latest = {"run_id": NEWER, "recorded_at": NOW}
    assert fingerprint.compare_with_snapshot(manifest(), deep=deep, with_ledger=True).superseded
    fake.latest = None  # no applied row: nothing newer
    assert not fingerprint.compare_with_snapshot(manifest(), deep=deep, with_ledger=True).superseded
    plain = fingerprint.compare_with_snapshot(manifest(), deep=deep)
    assert not plain.superseded and "_sync_ledger" not in fake.sql[-1]


def test_a_superseded_reconciliation_is_not_diagnosed_nor_repaired(
        monkeypatch: pytest.MonkeyPatch, fake: _FakeBigQuery) -> None:
    def no_diff(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("a superseded run must not be diagnosed")

    monkeypatch.setattr(reconcile.diffs, "find_differences", no_diff)
    fake.latest = {"run_id": NEWER, "recorded_at": NOW}
    certificate = reconcile.reconcile(manifest(), only_if_latest=True)
    assert certificate.verdict == results.SUPERSEDED
    assert certificate.message == "a newer snapshot was applied before this check ran"
    assert certificate.source_rows is None and certificate.target_rows is None
    assert len(fake.sql) == 1 and fake.ledger_reads == 0
    fake.latest = {"run_id": RUN, "recorded_at": NOW}
    assert reconcile.reconcile(manifest(), only_if_latest=True).verdict == results.MATCH


URI = "gs://b/snapshots/things/r/_manifest.json"


def _table_loaded() -> CloudEvent:
    body = base64.b64encode(json.dumps({"run_id": RUN, "manifest_uri": URI}).encode()).decode()
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "7"},
                      {"message": {"data": body, "messageId": "7"}})


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch, fake: _FakeBigQuery) -> dict[str, list[dict[str, object]]]:
    """The handlers around the fake: the event names `manifest()`, results rows are collected, no alert goes out."""
    rows: dict[str, list[dict[str, object]]] = {}
    for module in (reconciler_handler, validator_handler):
        monkeypatch.setattr(module, "loaded_snapshot", lambda _event: LoadedSnapshot(manifest(), URI))
    monkeypatch.setattr(results, "write", lambda _p, _d, name, found: rows.setdefault(name, []).extend(found))
    monkeypatch.setattr(validator_handler, "raise_alert", lambda *_a, **_k: None)
    monkeypatch.setattr("shared.reconciler.record.raise_alert", lambda *_a, **_k: None)
    return rows


@pytest.mark.parametrize("newer", [False, True])
def test_each_handler_runs_one_query_before_its_results(
        fake: _FakeBigQuery, written: dict[str, list[dict[str, object]]], newer: bool) -> None:
    """Before: the reconciler read the ledger in a job of its own, the validator twice (is_latest, freshness)."""
    fake.latest = {"run_id": NEWER if newer else RUN, "recorded_at": dt.datetime.now(dt.UTC)}
    assert reconciler_handler.handle_table_loaded(_table_loaded()) == ("superseded" if newer else "match")
    assert fake.ledger_reads == 0 and len(fake.sql) == 1
    (certificate,) = written[results.RECONCILIATION_TABLE]
    assert certificate["run_id"] == RUN and certificate["verdict"] == ("superseded" if newer else "match")
    found = validator_handler.handle_table_loaded(_table_loaded(), Thresholds(freshness_max_age_s=3600))
    assert fake.ledger_reads == 0 and len(fake.sql) == 2
    names = [row["check_name"] for row in written[results.VALIDATION_TABLE]]
    assert names == [c.check_name for c in found or []]
    if newer:
        assert names == ["superseded"]
    else:
        assert "superseded" not in names and "freshness" in names
        assert [c.check_name for c in found or [] if not c.passed] == []
