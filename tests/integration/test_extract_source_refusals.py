"""What the source itself refuses or loses while a request is extracted, against the real
PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) servers. A SELECT the source user may not
run fails its table until someone grants it: an alert naming the table and the cause (not the
password), the other tables written, nothing unexpected to deliver again. A source that goes away
after the extraction connected (refused, or closed mid-stream, through a TCP proxy closed under
it) ends the request with SourceLost, as an unreachable source does at connect time."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pymysql
import pytest

from matrix_sync.stack import LocalStack
from shared.clients import storage_client
from shared.config import Config
from shared.events import Message
from shared.extractor import outcomes, snapshot
from shared.extractor import run as extractor_run
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.handler import run_request
from shared.extractor.source import SourceLost
from shared.topology import ALERTS_TOPIC, MANIFEST_NAME
from tests.support import ensure_resources, write_config
from tests.support_reconcile import pull_json, pull_subscription

pytestmark = pytest.mark.stack


def _postgres(sql: str) -> None:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    connection.close()


def _mariadb(*statements: str) -> None:
    connection = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


@pytest.fixture
def postgres_user(unique_name: str) -> Iterator[tuple[str, str, str]]:
    """(role, its password, a schema) holding small(id, v) and big(id, v) of 5000 rows; the role may
    read both."""
    role = schema = f"fixagent_{unique_name}"
    password = f"Pw-{unique_name}-secret"
    _postgres(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; CREATE SCHEMA {schema}; "
              f"CREATE TABLE {schema}.small (id int PRIMARY KEY, v text); "
              f"INSERT INTO {schema}.small SELECT g, 'row ' || g FROM generate_series(1, 10) g; "
              f"CREATE TABLE {schema}.big (id int PRIMARY KEY, v text); "
              f"INSERT INTO {schema}.big SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g; "
              f"GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
    yield role, password, schema
    _postgres(f"DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role}")


def _config(stack: LocalStack, tmp_path: Path, unique_name: str, url: str, tables: list[str],
            password: str, monkeypatch: pytest.MonkeyPatch, chunk_rows: int = 500) -> Config:
    monkeypatch.setenv("MATRIX_SOURCE__PASSWORD", password)  # never in the config file
    config = write_config(tmp_path / "c.yaml", url=url, tables={name: ["id"] for name in tables}, suffix=unique_name,
                          chunk_rows=chunk_rows)
    ensure_resources(stack, config)
    return config


def _manifests(config: Config) -> list[str]:
    return [blob.name.split("/")[1] for blob in storage_client().list_blobs(config.gcs.bucket)
            if blob.name.endswith(MANIFEST_NAME)]


def _alerted_on_the_denied_table(config: Config, unique_name: str, url: str, denied: str, written: str,
                                 password: str) -> str:
    alerts = pull_subscription(config.pubsub.project, ALERTS_TOPIC, f"alerts-{unique_name}")

    outcome = run_request(config, Message(data={}, attributes={}, message_id="1"))

    assert outcome.unexpected == [] and [f.table for f in outcome.failed] == [denied]
    reason = outcome.failed[0].reason
    assert reason.startswith(f"table {denied!r}: the source user may not read it (") and password not in reason
    assert [r.table for r in outcome.written] == [written]
    alert = pull_json(alerts, lambda body: body.get("stage") == "extractor")
    assert (alert["table"], alert["reason"]) == (denied, reason)
    assert _manifests(config) == [config.table(written).target_table]
    return reason


def test_a_select_revoked_in_postgresql_fails_its_table_with_an_alert(
    stack: LocalStack, tmp_path: Path, unique_name: str, postgres_user: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    role, password, schema = postgres_user
    _postgres(f"REVOKE SELECT ON {schema}.small FROM {role}")
    url = f"postgresql+psycopg2://{role}@127.0.0.1:5432/test"
    config = _config(stack, tmp_path, unique_name, url, [f"{schema}.small", f"{schema}.big"], password, monkeypatch)

    reason = _alerted_on_the_denied_table(config, unique_name, url, f"{schema}.small", f"{schema}.big", password)

    assert "InsufficientPrivilege: permission denied for table small" in reason


@pytest.fixture
def mariadb_user(unique_name: str) -> Iterator[tuple[str, str, str, str]]:
    """(user, its password, a table it may only insert into, a table it may read)."""
    user, password = f"fixagent_{unique_name}", f"Pw-{unique_name}-secret"
    denied, allowed = f"fixagent_{unique_name}_small", f"fixagent_{unique_name}_ok"
    _mariadb(f"CREATE TABLE {denied} (id int PRIMARY KEY, v text)", f"INSERT INTO {denied} VALUES (1, 'a'), (2, 'b')",
             f"CREATE TABLE {allowed} (id int PRIMARY KEY, v text)", f"INSERT INTO {allowed} VALUES (1, 'a')",
             f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
             f"GRANT INSERT ON test.{denied} TO '{user}'@'%'", f"GRANT SELECT ON test.{allowed} TO '{user}'@'%'")
    yield user, password, denied, allowed
    _mariadb(f"DROP USER '{user}'@'%'", f"DROP TABLE {denied}", f"DROP TABLE {allowed}")


def test_a_select_mariadb_denies_fails_its_table_with_an_alert(
    stack: LocalStack, tmp_path: Path, unique_name: str, mariadb_user: tuple[str, str, str, str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password, denied, allowed = mariadb_user
    url = f"mysql+pymysql://{user}@127.0.0.1:3306/test?charset=utf8mb4"
    config = _config(stack, tmp_path, unique_name, url, [denied, allowed], password, monkeypatch)

    reason = _alerted_on_the_denied_table(config, unique_name, url, denied, allowed, password)

    assert ": 1142 SELECT command denied to user" in reason


class _Proxy:
    """A TCP proxy to PostgreSQL; `close` refuses new connections and cuts those it carries."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", 5432))
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept: a listener closed under it stays open
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for end in self._sockets:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()


@pytest.fixture
def proxied(stack: LocalStack, tmp_path: Path, unique_name: str, postgres_user: tuple[str, str, str],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Config, _Proxy]]:
    role, password, schema = postgres_user
    proxy = _Proxy()
    url = f"postgresql+psycopg2://{role}@127.0.0.1:{proxy.port}/test"
    yield _config(stack, tmp_path, unique_name, url, [f"{schema}.small", f"{schema}.big"], password, monkeypatch,
                  chunk_rows=100), proxy
    proxy.close()


def _failed_outcomes(config: Config) -> dict[str, str | None]:
    return {table.name: recorded.reason for table in config.tables
            if (recorded := outcomes.read(config.gcs.bucket, config.gcs.prefix, table.target_table)) is not None
            and recorded.failed}


def test_a_source_refusing_connections_after_the_request_connected_ends_it_as_unreachable(
    proxied: tuple[Config, _Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, proxy = proxied
    real_extract_table = extractor_run.extract_table

    def source_gone_before_big(config, engine, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        if source.config.name.endswith(".big"):
            proxy.close()
        return real_extract_table(config, engine, source, *args, **kwargs)

    monkeypatch.setattr(extractor_run, "extract_table", source_gone_before_big)
    big = config.tables[1].name
    with pytest.raises(SourceLost, match=f"lost the source while extracting table '{big}': OperationalError: "):
        run_request(config, Message(data={}, attributes={}, message_id="1"))

    assert _manifests(config) == [config.tables[0].target_table]
    assert list(_failed_outcomes(config)) == [big]


def test_a_source_closing_the_connection_mid_stream_ends_the_request_as_unreachable(
    proxied: tuple[Config, _Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read through the DBAPI cursor, a fetch at a time (the Arrow reader resumes an interrupted
    stream on its own, and reads through this cursor once it cannot)."""
    config, proxy = proxied
    monkeypatch.setenv(READER_ENV, "dbapi")
    real_stream_rows = snapshot.stream_rows

    def cut_after_the_first_chunk(*args, **kwargs):  # type: ignore[no-untyped-def]
        for number, chunk in enumerate(real_stream_rows(*args, **kwargs)):
            yield chunk
            if number == 0 and args[1].config.name.endswith(".big"):
                proxy.close()

    monkeypatch.setattr(snapshot, "stream_rows", cut_after_the_first_chunk)
    big = config.tables[1].name
    with pytest.raises(SourceLost, match=f"lost the source while extracting table '{big}'"):
        run_request(config, Message(data={}, attributes={}, message_id="1"))

    assert _manifests(config) == [config.tables[0].target_table]
    assert list(_failed_outcomes(config)) == [big]
