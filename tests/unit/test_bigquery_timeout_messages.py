"""A BigQuery request that outlives MATRIX_BIGQUERY_REQUEST_TIMEOUT_S (a deep reconciliation of a
1000-column table took 276 s in the emulator) is one line naming the table and the setting, not a
120-line traceback. The timeouts here are real: the client talks to a server that never answers."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from matrix_sync import cli as cli_module
from matrix_sync.errors import bigquery_timeout_line
from shared import bigquery as bq
from shared import bq_jobs, logs, results
from shared.clients import reset_clients
from shared.reconciler import on_request
from shared.reconciler.certificate import Certificate
from tests.support import write_config

HINT = "took longer than MATRIX_BIGQUERY_REQUEST_TIMEOUT_S=0.3 s; raise it for wide tables"


@pytest.fixture
def silent_bigquery(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A BigQuery endpoint that accepts connections and never answers, with a 0.3 s request timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    for name in ("STORAGE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", f"127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("MATRIX_BIGQUERY_REQUEST_TIMEOUT_S", "0.3")
    reset_clients()
    try:
        yield "silent-project"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()
        monkeypatch.undo()
        reset_clients()


def test_the_emulator_clients_timeout_is_a_read_timeout_recognised_as_bigquerys(silent_bigquery: str) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout) as raised:  # the emulator's retry does not retry it
        bq_jobs.run(silent_bigquery, "SELECT 1")
    assert bq.request_timed_out(raised.value)
    assert bigquery_timeout_line(raised.value, "the query") == f"the query {HINT}"


def test_the_real_services_retry_gives_up_with_a_retry_error_recognised_too(silent_bigquery: str) -> None:
    # bigquery.DEFAULT_RETRY retries read timeouts until its deadline (600 s; 1 s here), then raises RetryError
    retry = bigquery.DEFAULT_RETRY.with_deadline(1.0)
    with pytest.raises(gexc.RetryError) as raised:
        list(bq.client(silent_bigquery).query("SELECT 1", retry=retry, job_retry=None).result(retry=retry))
    assert bq.request_timed_out(raised.value)


def test_other_errors_are_not_a_bigquery_timeout() -> None:
    gcs_timeout = requests.exceptions.ReadTimeout(
        "read timed out", request=requests.Request("GET", "http://h/storage/v1/b/x/o/y").prepare())
    connect_timeout = requests.exceptions.ConnectTimeout(
        "no route", request=requests.Request("GET", "http://h/bigquery/v2/projects/p/jobs").prepare())
    for error in (gcs_timeout, connect_timeout, gexc.RetryError("Timeout of 600.0s exceeded", None),
                  gexc.BadRequest("syntax error"), ValueError("x")):
        assert not bq.request_timed_out(error) and bigquery_timeout_line(error) is None


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    write_config(tmp_path / "c.yaml", url=f"sqlite:///{tmp_path / 'none.db'}",
                 tables={"wide": ["id"], "narrow": ["id"]}, suffix="timeouts")
    return tmp_path / "c.yaml"


def _reconcile(config_path: Path, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    try:
        result = CliRunner().invoke(cli_module.main, ["--log-file", str(tmp_path / "log.jsonl"), "reconcile",
                                                      "--config", str(config_path), *args])
    finally:
        logs.configure()
    return result.exit_code, result.stdout, result.stderr


def test_reconcile_names_the_table_that_timed_out_and_the_setting_and_goes_on(
        silent_bigquery: str, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def check_table(request: object, table_id: str) -> Certificate:
        checked.append(table_id)
        if table_id.endswith(".wide"):  # the deep-hash query: a real request to a BigQuery that never answers
            bq_jobs.run(silent_bigquery, "SELECT 1")
        return Certificate(table_id, "run-1", verdict=results.MATCH, mode="deep")

    monkeypatch.setattr(cli_module, "target_config", lambda config: "test")
    monkeypatch.setattr(on_request, "resolve", lambda request: ([f"p.d.{t}" for t in request.tables], []))
    monkeypatch.setattr(on_request, "check_table", check_table)

    code, out, err = _reconcile(config_path, tmp_path, "--deep")

    assert code == 1, (out, err)
    assert checked == ["p.d.wide", "p.d.narrow"]  # the table after the one that timed out is still reconciled
    assert err.strip().splitlines() == [f"wide: not reconciled, a BigQuery request {HINT}"]
    assert "Traceback" not in out + err and "narrow" in out and "match" in out


def test_a_timeout_in_any_other_command_is_one_line_naming_the_setting(
        silent_bigquery: str, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "target_config", lambda config: "test")

    def resolve(request: object) -> tuple[list[str], list[str]]:  # the ledger query that finds each table's run
        bq_jobs.run(silent_bigquery, "SELECT 1")
        return [], []

    monkeypatch.setattr(on_request, "resolve", resolve)

    code, out, err = _reconcile(config_path, tmp_path)

    assert code == 2, (out, err)
    assert err.strip().splitlines() == [f"error: a BigQuery request {HINT}"]


def test_compare_keys_names_the_setting_for_a_table_that_timed_out(
        silent_bigquery: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix_sync import compare as cmp
    from matrix_sync import operator
    from shared.config import load_config

    sqlite3_path = tmp_path / "source.db"
    sqlite3_path.write_bytes(b"")
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{sqlite3_path}", tables={"wide": ["id"]},
                          suffix="timeouts")

    def compare_table(*args: object, **kwargs: object) -> None:
        bq_jobs.run(silent_bigquery, "SELECT 1")

    monkeypatch.setattr(cmp, "compare_table", compare_table)
    results_, not_compared = operator._compare_all(load_config(tmp_path / "c.yaml"), [], keep=False)

    assert results_ == [] and config.tables[0].name == "wide"
    assert not_compared == [f"wide: not compared, a BigQuery request {HINT}"]
