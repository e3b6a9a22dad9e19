"""Waiting for the chain: each poll asks only about what is still pending (results only once loaded),
looks each results table up once, and polls quickly while things change."""
from __future__ import annotations

from typing import Any

import pytest

from matrix_sync import cycle
from shared.config import Config
from shared.extractor.snapshot import ExtractResult

CONFIG = Config.model_validate({
    "source": {"url": "sqlite:///x.db"}, "tables": [{"name": "orders", "key": ["id"]}],
    "gcs": {"bucket": "bucket-b"}, "bigquery": {"project": "p", "dataset": "d"}, "pubsub": {"project": "p"},
})
EXTRACTED = [ExtractResult("orders", "run-1", "delta", "gs://bucket-b/m", 10, 2, 1, 1, 100, 0, 0.1)]


class FakeBigQuery:
    """The ledger row appears after the first poll, the results after the second."""

    def __init__(self, sleeps: list[float]) -> None:
        self.sleeps = sleeps
        self.lookups: list[str] = []
        self.queries: list[str] = []

    def get_table(self, table_id: str) -> object:
        self.lookups.append(table_id.rsplit(".", 1)[1])
        return object()

    def query(self, _project: str, sql: str, _params: list[Any]) -> list[dict[str, object]]:
        table = sql.split("`")[1].rsplit(".", 1)[1]
        self.queries.append(table)
        if table == "_sync_ledger" and self.sleeps:
            return [{"run_id": "run-1", "status": "applied", "rows_inserted": 1, "rows_updated": 1, "rows_deleted": 1}]
        if table == "_sync_reconciliations" and len(self.sleeps) > 1:
            return [{"run_id": "run-1", "verdict": "match"}]
        if table == "_sync_validations" and len(self.sleeps) > 1:
            return [{"run_id": "run-1", "check_name": "row_count", "passed": True}]
        return []


def test_polls_ask_only_about_pending_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    fake = FakeBigQuery(sleeps)
    monkeypatch.setattr(cycle.bq, "get_table", fake.get_table)
    monkeypatch.setattr(cycle.bq, "query", fake.query)
    monkeypatch.setattr(cycle.time, "sleep", sleeps.append)
    (report,) = cycle.wait_for_chain(CONFIG, EXTRACTED, timeout_s=60, poll_s=1.0)
    assert report.ok and (report.rows_inserted, report.rows_updated, report.rows_deleted) == (1, 1, 1)
    assert fake.queries.count("_sync_ledger") == 2  # not asked again once applied
    # the results tables are asked about only once the ledger shows the snapshot loaded
    assert fake.queries[0] == "_sync_ledger" and fake.queries[1] == "_sync_ledger"
    assert fake.queries.count("_sync_reconciliations") == fake.queries.count("_sync_validations") == 2
    assert sorted(fake.lookups) == ["_sync_ledger", "_sync_reconciliations", "_sync_validations"]
    assert sleeps and all(cycle.MIN_POLL_S <= s <= 1.0 for s in sleeps)


def test_the_poll_interval_grows_while_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(cycle.bq, "get_table", lambda _table_id: None)
    monkeypatch.setattr(cycle.time, "sleep", sleeps.append)
    clock = iter(range(0, 1000))
    monkeypatch.setattr(cycle.time, "monotonic", lambda: next(clock) * 0.01)
    (report,) = cycle.wait_for_chain(CONFIG, EXTRACTED, timeout_s=1.0, poll_s=0.5)
    assert report.load_status == "pending"
    assert sleeps[0] == pytest.approx(cycle.MIN_POLL_S * 1.5)
    assert sleeps == sorted(sleeps) and sleeps[-1] == 0.5
