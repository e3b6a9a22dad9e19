"""The loader's early look at the ledger: the run's own rows, its base's, and the newest applied
snapshot, in one GoogleSQL query."""
from __future__ import annotations

import pytest

from shared import ledger
from tests.sql_parse import strict


def test_history_asks_once_and_tells_the_latest_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    def query(_project: str, sql: str, _params: object = ()) -> list[dict[str, object]]:
        sent.append(sql)
        row = {"run_id": "r1", "sequence": 1, "status": ledger.APPLIED, "published_at": None, "key_columns": "id",
               "hashed_columns": '["id", "v"]'}
        return [{**row, "latest": False}, {**row, "run_id": "r0", "sequence": 5, "latest": True}]

    monkeypatch.setattr(ledger.bq, "query", query)
    history = ledger.history("p", "d", "p.d.t", "r1", "r0")
    assert len(sent) == 1
    strict(sent[0])
    assert [e.run_id for e in history.entries] == ["r1"]
    assert history.latest is not None and (history.latest.run_id, history.latest.sequence) == ("r0", 5)
    assert history.latest.hashed_columns == ("id", "v")
    assert history.find("r1", ledger.APPLIED) is not None and history.find("r0", ledger.APPLIED) is None


def test_history_of_a_table_never_applied_has_no_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.bq, "query", lambda *_args: [])
    history = ledger.history("p", "d", "p.d.t", "r1")
    assert history.entries == () and history.latest is None
