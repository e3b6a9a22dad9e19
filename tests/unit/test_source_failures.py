"""A driver's error met while extracting a table, classified: a privilege the source user lacks
fails the table until someone grants it (an alert, the request acknowledged); a source gone away
after the agent connected hands the request back as at connect time; anything else is unexpected.
The agent writes what it does with the request under its labels (event_id, stage)."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import psycopg2
import pymssql
import pymysql
import pytest
import sqlalchemy as sa

from matrix_sync import agent
from shared import logs
from shared.config import Config
from shared.extractor import outcomes
from shared.extractor import run as extractor_run
from shared.extractor.run import Extraction, FailedTable
from shared.extractor.source import SourceError, SourceLost, source_failure

CONFIG = Config.model_validate({
    "source": {"url": "sqlite:///x.db"},
    "tables": [{"name": "first", "key": ["id"]}, {"name": "second", "key": ["id"]}, {"name": "third", "key": ["id"]}],
    "gcs": {"bucket": "bucket-a"}, "bigquery": {"project": "p-1", "dataset": "ds"}, "pubsub": {"project": "p-1"},
})


def _wrapped(error: Exception) -> sa.exc.DBAPIError:
    """As SQLAlchemy raises a driver's error met on a checkout or an execute."""
    return sa.exc.OperationalError("SELECT 1", {}, error)


@pytest.mark.parametrize("error", [
    pymysql.err.OperationalError(1142, "SELECT command denied to user 'u'@'localhost' for table `test`.`small`"),
    pymysql.err.OperationalError(1143, "SELECT command denied to user 'u'@'localhost' for column 'v' in table 'small'"),
    pymysql.err.OperationalError(1044, "Access denied for user 'u'@'%' to database 'test'"),
    pymssql.exceptions.ProgrammingError(229, b"The SELECT permission was denied on the object 'small'"),
    pymssql.exceptions.ProgrammingError(230, b"The SELECT permission was denied on the column 'v'"),
])
def test_a_denied_privilege_fails_the_table_alone_as_a_missing_table_does(error: Exception) -> None:
    for raised in (error, _wrapped(error)):
        failure = source_failure("small", raised)
        assert type(failure) is SourceError, raised
        assert str(failure).startswith("table 'small': the source user may not read it (")


@pytest.mark.parametrize("error", [
    psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis probably means the server"),
    psycopg2.OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused'),
    psycopg2.InterfaceError("connection already closed"),
    pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'"),
    pymysql.err.OperationalError(2006, "MySQL server has gone away"),
    pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
    pymssql.exceptions.OperationalError(20009, b"Unable to connect: Adaptive Server is unavailable"),
    pymssql.exceptions.OperationalError(20003, b"Adaptive Server connection timed out"),
])
def test_a_source_gone_away_is_the_source_lost(error: Exception) -> None:
    for raised in (error, _wrapped(error)):
        assert isinstance(source_failure("big", raised), SourceLost), raised


@pytest.mark.parametrize("error", [
    ValueError("a bug"),
    pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
    pymssql.exceptions.OperationalError(1205, b"Transaction was deadlocked"),
    psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"),
])
def test_any_other_error_is_left_unexpected(error: Exception) -> None:
    assert source_failure("big", error) is None


@pytest.fixture
def extract_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, Exception], list[tuple[str, str]]]]:
    """extract() over CONFIG with each table failing with the error given for it; the outcomes recorded."""
    failing: dict[str, Exception] = {}
    recorded: list[tuple[str, str]] = []

    @contextmanager
    def free_lock(*args: object) -> Iterator[SimpleNamespace]:
        yield SimpleNamespace()

    def extract_locked(config: Config, engine: object, table: SimpleNamespace, *args: object) -> None:
        raise failing[table.name]

    monkeypatch.setattr(extractor_run, "connect", lambda source: SimpleNamespace(dispose=lambda: None))
    monkeypatch.setattr(extractor_run, "table_lock", free_lock)
    monkeypatch.setattr(extractor_run, "_extract_locked", extract_locked)
    monkeypatch.setattr(outcomes, "record",
                        lambda bucket, prefix, table, outcome, **kw: recorded.append((table, outcome)))
    yield failing, recorded


def test_a_revoked_select_is_no_unexpected_failure(extract_with: tuple[dict[str, Exception], list]) -> None:
    failing, _ = extract_with
    denied = "SELECT command denied to user 'u'@'h' for table 'first'"
    failing.update(first=pymysql.err.OperationalError(1142, denied),
                   second=ValueError("a bug"), third=pymssql.exceptions.ProgrammingError(229, b"denied"))

    outcome = extractor_run.extract(CONFIG)

    assert [(f.table, f.unexpected) for f in outcome.failed] == [("first", False), ("second", True), ("third", False)]
    assert outcome.failed[0] == FailedTable("first", "table 'first': the source user may not read it (OperationalError: "
                                            "1142 SELECT command denied to user 'u'@'h' for table 'first'); grant it "
                                            "SELECT on the table")


def test_a_source_lost_mid_request_ends_it_as_at_connect_time(extract_with: tuple[dict[str, Exception], list]) -> None:
    failing, recorded = extract_with
    lost = psycopg2.OperationalError("server closed the connection")
    failing.update(first=ValueError("a bug"), second=_wrapped(lost))

    with pytest.raises(SourceLost, match="lost the source while extracting table 'second': OperationalError: server"):
        extractor_run.extract(CONFIG)

    assert recorded == [("first", "failed"), ("second", "failed"), ("third", "failed")]


class _Subscriber:
    def __init__(self) -> None:
        self.deadlines: list[int] = []
        self.acknowledged: list[str] = []

    def modify_ack_deadline(self, *, subscription: str, ack_ids: list[str], ack_deadline_seconds: int) -> None:
        self.deadlines.append(ack_deadline_seconds)

    def acknowledge(self, *, subscription: str, ack_ids: list[str]) -> None:
        self.acknowledged.extend(ack_ids)


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The agent's log lines as written (labels are read when a line is formatted)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.CloudLoggingFormatter())
    logger = logging.getLogger(agent.__name__)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _handle(monkeypatch: pytest.MonkeyPatch, run_request: object) -> tuple[_Subscriber, object]:
    fake = _Subscriber()
    monkeypatch.setattr(agent, "subscriber", lambda: fake)
    monkeypatch.setattr(agent, "run_request", run_request)
    message = SimpleNamespace(data=json.dumps({}).encode(), attributes={}, message_id="77")
    returned = agent._handle(CONFIG, "projects/p-1/subscriptions/extractor-pull",
                             SimpleNamespace(message=message, ack_id="ack-77"), lambda outcome: None)
    return fake, returned


def test_the_agent_hands_back_a_request_whose_source_was_lost_mid_way(monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(config: Config, message: object) -> Extraction:
        raise SourceLost("lost the source while extracting table 'second'")

    fake, returned = _handle(monkeypatch, lost)

    assert isinstance(returned, SourceLost) and fake.acknowledged == []
    assert fake.deadlines[-1] == agent.SOURCE_RETRY_S


def test_a_request_left_for_another_delivery_is_logged_under_its_labels(
    monkeypatch: pytest.MonkeyPatch, lines: io.StringIO
) -> None:
    failed = Extraction(failed=[FailedTable("first", "ValueError: a bug", unexpected=True)])

    fake, _ = _handle(monkeypatch, lambda config, message: failed)

    (left,) = [json.loads(line) for line in lines.getvalue().splitlines() if "left for another delivery" in line]
    assert left["logging.googleapis.com/labels"] == {"component": agent.__name__, "event_id": "77", "stage": "agent"}
    assert fake.acknowledged == []
