"""A warm instance checks the datasets and bookkeeping tables it ensures once; a NotFound from anything
that uses them (or a new client) makes the next ensure look again, so a dropped one is created again."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared import ledger, results
from shared.topology import VALIDATION_TABLE


class _Rows(list):
    job_id = "job-1"
    project, location = "p", "US"
    _first_page_response: dict[str, Any] = {}


class _FakeBigQuery:
    """Datasets and tables by id; queries against a table that is gone raise NotFound."""

    def __init__(self) -> None:
        self.datasets: set[str] = {"p.d"}
        self.tables: dict[str, list[bigquery.SchemaField]] = {}
        self.calls: list[str] = []

    def get_dataset(self, dataset_id: str) -> bigquery.Dataset:
        self.calls.append(f"get_dataset {dataset_id}")
        if dataset_id not in self.datasets:
            raise gexc.NotFound(dataset_id)
        dataset = bigquery.Dataset(dataset_id)
        dataset.location = "EU"
        return dataset

    def get_table(self, table_id: str) -> bigquery.Table:
        self.calls.append(f"get_table {table_id}")
        if table_id not in self.tables:
            raise gexc.NotFound(table_id)
        return bigquery.Table(table_id, schema=self.tables[table_id])

    def create_table(self, table: bigquery.Table, **_kwargs: object) -> bigquery.Table:
        self.calls.append(f"create_table {table.full_table_id or table.reference}")
        self.tables[str(table.reference)] = list(table.schema)
        return table

    def query_and_wait(self, sql: str, **_kwargs: object) -> _Rows:
        self.calls.append("query")
        if not any(f"`{t}`" in sql or "`{}`.`{}`.`{}`".format(*t.split(".")) in sql for t in self.tables):
            raise gexc.NotFound(f"Not found: Table in {sql[:40]}")
        return _Rows()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeBigQuery]:
    for name in ("BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    client = _FakeBigQuery()
    monkeypatch.setattr(bq, "client", lambda _project: client)
    yield client


def test_a_dataset_is_looked_at_once_and_again_after_a_not_found(fake: _FakeBigQuery) -> None:
    assert bq.ensure_dataset("p", "d").location == "EU"
    assert bq.ensure_dataset("p", "d").location == "EU"  # the staging tables' location comes from it
    assert fake.calls == ["get_dataset p.d"]
    with pytest.raises(gexc.NotFound):
        bq.query("p", "SELECT * FROM `p.d.gone`")
    bq.ensure_dataset("p", "d")
    assert fake.calls == ["get_dataset p.d", "query", "get_dataset p.d"]


def test_a_missing_dataset_is_not_remembered(fake: _FakeBigQuery) -> None:
    for _ in range(2):
        with pytest.raises(bq.MissingDatasetError):
            bq.ensure_dataset("p", "nope")
    assert fake.calls == ["get_dataset p.nope"] * 2


def test_a_new_client_checks_again(monkeypatch: pytest.MonkeyPatch, fake: _FakeBigQuery) -> None:
    bq.ensure_dataset("p", "d")
    other = _FakeBigQuery()
    monkeypatch.setattr(bq, "client", lambda _project: other)  # reset_clients(): another stack, say
    bq.ensure_dataset("p", "d")
    assert other.calls == ["get_dataset p.d"]


def test_the_ledger_is_ensured_once_per_process(fake: _FakeBigQuery) -> None:
    ledger.ensure("p", "d")
    ledger.ensure("p", "d")
    assert fake.calls == ["get_table p.d._sync_ledger", "create_table p.d._sync_ledger"]


def test_a_ledger_dropped_after_it_was_ensured_is_created_again_by_history(fake: _FakeBigQuery) -> None:
    ledger.ensure("p", "d")
    del fake.tables["p.d._sync_ledger"]  # dropped by someone else
    ledger.ensure("p", "d")  # remembered: no call
    history = ledger.history("p", "d", "p.d.t", "r1")  # NotFound, created again, asked again
    assert history.entries == () and "p.d._sync_ledger" in fake.tables
    assert fake.calls[2:] == ["query", "get_table p.d._sync_ledger", "create_table p.d._sync_ledger", "query"]
    ledger.ensure("p", "d")
    assert len(fake.calls) == 6


def test_a_results_table_dropped_after_it_was_ensured_is_created_again_by_write(fake: _FakeBigQuery) -> None:
    row = {"table_id": "p.d.t", "run_id": "r", "check_name": "c", "passed": True}
    results.write("p", "d", VALIDATION_TABLE, [row])
    del fake.tables[f"p.d.{VALIDATION_TABLE}"]
    results.write("p", "d", VALIDATION_TABLE, [row])
    assert fake.calls == [f"get_table p.d.{VALIDATION_TABLE}", f"create_table p.d.{VALIDATION_TABLE}", "query",
                          "query", f"get_table p.d.{VALIDATION_TABLE}", f"create_table p.d.{VALIDATION_TABLE}", "query"]


def test_new_columns_are_still_added_to_a_remembered_table(fake: _FakeBigQuery, monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[str] = []
    monkeypatch.setattr(bq, "add_columns", lambda _table_id, fields: added.extend(f.name for f in fields))
    fields = [bigquery.SchemaField("a", "STRING")]
    bq.ensure_table("p.d.x", fields, clustering=[])
    fake.tables["p.d.x"] = fields  # as created
    bq.ensure_table("p.d.x", [*fields, bigquery.SchemaField("b", "INT64")], clustering=[])  # a newer version's columns
    assert added == ["b"]


def test_dropping_a_remembered_table_forgets_it(fake: _FakeBigQuery, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.delete_table = lambda table_id, **_kwargs: fake.tables.pop(table_id, None)  # type: ignore[attr-defined]
    ledger.ensure("p", "d")
    bq.drop_table("p.d._sync_ledger")
    ledger.ensure("p", "d")
    assert fake.calls == ["get_table p.d._sync_ledger", "create_table p.d._sync_ledger"] * 2
