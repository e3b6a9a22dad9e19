"""Queries and scripts go to BigQuery as one jobs.query (`Client.query_and_wait`), not jobs.insert and
two getQueryResults; only a statement that reads is run again after a failure, never one that writes."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

from shared import bigquery as bq
from shared import bq_jobs


class _Rows(list):  # stands in for the RowIterator query_and_wait returns
    job_id = "job-1"
    query_id = None
    project = "p"
    location = "US"
    total_bytes_processed = 1024
    num_dml_affected_rows = 3
    _first_page_response: dict[str, Any] = {}


class _JobsQueryOnly:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def query_and_wait(self, sql: str, **kwargs: Any) -> _Rows:
        self.calls.append({"sql": sql, **kwargs})
        return _Rows([{"n": 1}])

    def query(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("jobs.insert used for a query without a job id")


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[_JobsQueryOnly]:
    for name in ("BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    fake = _JobsQueryOnly()
    monkeypatch.setattr(bq, "client", lambda _project: fake)
    yield fake


@pytest.mark.parametrize("sql", ["SELECT 1", "  select * FROM t", "WITH a AS (SELECT 1) SELECT * FROM a",
                                 "-- note\nSELECT 1;", "/* x */ (SELECT 1) UNION ALL (SELECT 2)", "# c\nSELECT 1"])
def test_a_single_select_reads_only(sql: str) -> None:
    assert bq.reads_only(sql)


@pytest.mark.parametrize("sql", ["INSERT INTO t (a) VALUES (1)", "UPDATE `t` SET a = 1 WHERE TRUE", "MERGE t USING s ON 1=1",
                                 "DELETE FROM t WHERE TRUE", "DECLARE x INT64; SELECT x", "BEGIN TRANSACTION; COMMIT",
                                 "SELECT 1; DELETE FROM t WHERE TRUE", "CREATE TABLE t AS SELECT 1",
                                 "ALTER TABLE t ADD COLUMN c INT64", "-- SELECT\nDELETE FROM t WHERE TRUE"])
def test_anything_else_may_write(sql: str) -> None:
    assert not bq.reads_only(sql)


def test_a_read_is_one_jobs_query_that_bigquery_may_run_again(deployed: _JobsQueryOnly) -> None:
    assert bq.query("p", "SELECT @a AS n", [bigquery.ScalarQueryParameter("a", "INT64", 1)]) == [{"n": 1}]
    (call,) = deployed.calls
    assert call["job_retry"] is DEFAULT_JOB_RETRY and call["retry"] is bigquery.DEFAULT_RETRY
    assert [p.name for p in call["job_config"].query_parameters] == ["a"]


@pytest.mark.parametrize("run", [
    lambda: bq.query("p", "INSERT INTO `p.d.t` (a) VALUES (1)"),
    lambda: bq.insert_rows("p.d.t", [bigquery.SchemaField("a", "INT64")], [{"a": 1}]),
    lambda: bq.script("p", "SELECT 1"),  # a script is never run again, whatever it starts with
    lambda: bq_jobs.run("p", "DELETE FROM `p.d.t` WHERE TRUE"),
])
def test_a_statement_that_writes_is_never_run_again_by_the_client(deployed: _JobsQueryOnly, run: Any) -> None:
    run()
    (call,) = deployed.calls
    assert call["job_retry"] is None


def test_job_stats_come_from_the_jobs_query_answer(deployed: _JobsQueryOnly) -> None:
    stats = bq_jobs.JobStats()
    assert bq_jobs.run("p", "DELETE FROM `p.d.t` WHERE TRUE", stats=stats) == [{"n": 1}]
    assert (stats.jobs, stats.bytes_processed, stats.dml_rows, stats.job_ids) == (1, 1024, 3, ["job-1"])


def test_a_query_run_without_a_job_is_counted_by_its_query_id() -> None:
    rows = _Rows()
    rows.job_id, rows.query_id, rows.total_bytes_processed, rows.num_dml_affected_rows = None, "q-1", None, None
    stats = bq_jobs.JobStats()
    stats.add(rows)  # type: ignore[arg-type]
    assert (stats.jobs, stats.bytes_processed, stats.dml_rows, stats.job_ids) == (1, 0, 0, ["q-1"])


def test_errors_in_an_ok_answer_raise_the_failed_jobs_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator answers a failed jobs.query with 200 and `errors`; the job's own error is raised."""

    class _FailedJob:
        error_result = {"reason": "notFound", "message": "Not found: Table p.d.t"}

        def result(self, **_kwargs: object) -> None:
            raise gexc.NotFound("Not found: Table p.d.t")

    class _Client(_JobsQueryOnly):
        def query_and_wait(self, sql: str, **kwargs: Any) -> _Rows:
            rows = _Rows()
            rows._first_page_response = {"errors": [_FailedJob.error_result]}
            return rows

        def get_job(self, job_id: str, **_kwargs: object) -> _FailedJob:
            assert job_id == "job-1"
            return _FailedJob()

    monkeypatch.setattr(bq, "client", lambda _project: _Client())
    with pytest.raises(gexc.NotFound, match="Table p.d.t"):
        bq.query("p", "SELECT * FROM `p.d.t`")


def test_errors_of_a_job_that_succeeded_are_no_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Client(_JobsQueryOnly):
        def query_and_wait(self, sql: str, **kwargs: Any) -> _Rows:
            rows = _Rows([{"n": 1}])
            rows._first_page_response = {"errors": [{"reason": "invalid", "message": "a warning"}]}
            return rows

        def get_job(self, _job_id: str, **_kwargs: object) -> object:
            return type("Done", (), {"error_result": None})()

    monkeypatch.setattr(bq, "client", lambda _project: _Client())
    assert bq.query("p", "SELECT 1") == [{"n": 1}]
