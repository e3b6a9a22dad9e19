"""Against the BigQuery emulator: a query or script is one jobs.query request (POST .../queries) that
fails as jobs.insert + getQueryResults did, with its numbers for JobStats; and the existence checks a
warm loader remembers do not outlive a dropped ledger."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import bq_jobs
from shared.identifiers import quote_bigquery
from shared.loader.handler import handle_snapshot_event
from shared.topology import LEDGER_TABLE
from tests.integration.test_loader_support import Place, Writer, held_notifications, ledger, rows_for, storage_event

pytestmark = pytest.mark.stack


@contextmanager
def requests_sent(project: str) -> Iterator[list[str]]:
    """The method and path of every HTTP request the project's BigQuery client sends in the block."""
    session = bq.client(project)._http
    original = session.request
    sent: list[str] = []

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(f"{method} {re.sub(r'^https?://[^/]+/bigquery/v2/projects/[^/]+', '', url.split('?')[0])}")
        return original(method, url, *args, **kwargs)

    session.request = request
    try:
        yield sent
    finally:
        del session.request


@pytest.fixture
def place(stack: LocalStack, unique_name: str) -> Place:
    place = Place.create(stack, unique_name)
    bq.query(place.project, f"CREATE TABLE {quote_bigquery(place.project, place.dataset, 't')} (id INT64, v STRING)")
    return place


def test_a_query_a_dml_statement_and_a_script_are_one_request_each(place: Place) -> None:
    table = quote_bigquery(place.project, place.dataset, "t")
    stats = bq_jobs.JobStats()
    with requests_sent(place.project) as sent:
        bq_jobs.run(place.project, f"INSERT INTO {table} (id, v) VALUES (1, 'a'), (2, 'b')", stats=stats)
        rows = bq.query(place.project, f"SELECT id FROM {table} WHERE v = @v", [bq.bigquery.ScalarQueryParameter(
            "v", "STRING", "b")])
        outcome = bq.script(place.project, f"DECLARE n INT64; BEGIN TRANSACTION; SET n = (SELECT COUNT(*) FROM {table}); "
                                           "COMMIT TRANSACTION; SELECT n AS n, 'applied' AS outcome")
    assert sent == ["POST /queries"] * 3
    assert [r["id"] for r in rows] == [2] and [(r["n"], r["outcome"]) for r in outcome] == [(2, "applied")]
    assert (stats.jobs, stats.bytes_processed, stats.dml_rows) == (1, 0, 2)  # the emulator reports 0 bytes
    assert len(stats.job_ids) == 1 and stats.job_ids[0]


def test_paged_results_are_all_read(place: Place) -> None:
    rows = list(bq_jobs.rows(place.project, "SELECT n FROM UNNEST(GENERATE_ARRAY(1, 30000)) AS n"))
    assert [r["n"] for r in rows] == list(range(1, 30001))


def _old_path_error(place: Place, sql: str) -> BaseException:
    """How jobs.insert + getQueryResults fails (bq.query under a job id still takes that path)."""
    with pytest.raises(gexc.GoogleAPICallError) as raised:
        bq.query(place.project, sql, job_id=f"old_{abs(hash(sql))}_{place.dataset}")
    return raised.value


def _without_job_id(error: BaseException) -> str:
    return re.sub(r"Job ID: \S+", "Job ID: *", str(error))


@pytest.mark.parametrize("sql", [
    "SELECT nope FROM `{t}`",
    "SELECT * FROM `{p}.{d}.missing`",
    "INSERT INTO `{t}` (id) VALUES ('x')",
])
def test_a_failed_query_raises_what_jobs_insert_raised(place: Place, sql: str) -> None:
    sql = sql.format(t=f"{place.project}.{place.dataset}.t", p=place.project, d=place.dataset)
    expected = _old_path_error(place, sql)
    for run in (lambda: bq.query(place.project, sql), lambda: bq_jobs.run(place.project, sql)):
        with pytest.raises(type(expected)) as raised:
            run()
        assert _without_job_id(raised.value) == _without_job_id(expected)


def test_a_failed_script_raises_and_commits_nothing(place: Place) -> None:
    table = quote_bigquery(place.project, place.dataset, "t")
    with pytest.raises(gexc.BadRequest, match="boom"):
        bq.script(place.project, f"BEGIN TRANSACTION; INSERT INTO {table} (id) VALUES (9); SELECT ERROR('boom'); "
                                 "COMMIT TRANSACTION; SELECT 1 AS x")
    assert bq.query(place.project, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0


def _load(snapshot: Any) -> Callable[[], Any]:
    return lambda: handle_snapshot_event(storage_event(snapshot.place.bucket, snapshot.manifest_name))


def test_a_ledger_dropped_under_a_warm_loader_is_created_again(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    first, second = writer.full(rows_for(1, 10), sequence=1), writer.full(rows_for(2, 12), sequence=2)
    with held_notifications(stack):
        first.publish()
        assert _load(first)().status == "applied"  # this process now remembers the datasets and the ledger
        bq.client(place.project).delete_table(f"{place.project}.{place.dataset}.{LEDGER_TABLE}")  # not through bq
        second.publish()
        with requests_sent(place.project) as sent:
            assert _load(second)().status == "applied"
    assert f"GET /datasets/{place.dataset}" not in sent  # the target dataset is still remembered
    assert [r["run_id"] for r in ledger(place) if r["status"] == "applied"] == [second.run_id]
