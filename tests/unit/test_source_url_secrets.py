"""A source URL given whole in MATRIX_SOURCE__URL: no part of its password reaches an error or a log
line, wherever the URL holds it (user part, password=/pwd= in the query, an '@' left unencoded)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config
from shared.extractor.source import SourceError, connect
from shared.secrets import redact, register_url, url_passwords
from tests.unit.test_secrets import CONFIG

UNREACHABLE = "127.0.0.1:1/test"  # nothing listens on port 1: refused at once


def connect_error(tmp_path: Path, url: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    config = load_config(path, environ={"MATRIX_SOURCE__URL": url})
    with pytest.raises(SourceError) as error:
        connect(config.source)
    return str(error.value)


@pytest.mark.parametrize(("url", "password"), [
    (f"mysql+pymysql://root@{UNREACHABLE}?password=QuerySecret7", "QuerySecret7"),
    (f"mysql+pymysql://root@{UNREACHABLE}?charset=utf8mb4&PWD=QuerySecret8", "QuerySecret8"),
    (f"mysql+pymysql://root@{UNREACHABLE}?Password=Query%2BSecret9", "Query+Secret9"),
    (f"mysql+pymysql://root:UserSecret7@{UNREACHABLE}", "UserSecret7"),
])
def test_a_source_that_cannot_be_reached_is_named_without_its_password(
        tmp_path: Path, log_stream: io.StringIO, url: str, password: str) -> None:
    message = connect_error(tmp_path, url)
    assert message.startswith("cannot connect to source mysql+pymysql://root") and "@127.0.0.1:1/test" in message
    for shown in (password, password.replace("+", "%2B")):
        assert shown not in message + log_stream.getvalue()


def test_an_unencoded_at_in_the_password_is_refused_before_the_driver_sees_a_host_made_of_it(
        tmp_path: Path, log_stream: io.StringIO) -> None:
    message = connect_error(tmp_path, f"mysql+pymysql://root:Ab@Secret9@{UNREACHABLE}")
    assert message == ("cannot connect to source mysql+pymysql://root:***@127.0.0.1:1/test: the password holds "
                       "an '@' that is not percent-encoded; write it as %40")
    assert "Secret9" not in message + log_stream.getvalue()


def test_a_driver_message_quoting_a_query_password_is_redacted() -> None:
    register_url("mssql+pymssql://etl@db/Matrix?charset=utf8&pwd=Dr1verQuoted")
    assert redact("login failed: password 'Dr1verQuoted' expired") == "login failed: password '***' expired"


@pytest.mark.parametrize(("url", "passwords"), [
    ("mysql+pymysql://root:Ab@Secret9@db:3306/test", {"Ab@Secret9"}),
    ("postgresql://etl:Pa55%40w@db/matrix", {"Pa55%40w", "Pa55@w"}),
    ("postgresql://etl@db/matrix?sslmode=require&PASSWORD=a%26b", {"a%26b", "a&b"}),
    ("mssql+pyodbc:///?odbc_connect=DRIVER%3DODBC%3BUID%3Detl%3BPWD%3DOdbcPw1%3B", {"OdbcPw1"}),
    ("postgresql://etl@db:5432/matrix@archive", set()),
])
def test_every_password_a_url_holds_is_found(url: str, passwords: set[str]) -> None:
    assert url_passwords(url) == passwords


def test_a_password_with_an_unencoded_at_is_masked_whole() -> None:
    shown = redact("mysql+pymysql://root:Ab@Secret9@127.0.0.1:3306/test")
    assert shown == "mysql+pymysql://root:***@127.0.0.1:3306/test"
    assert redact("postgresql://etl:pw1@db/archive@2024") == "postgresql://etl:***@db/archive@2024"


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://etl:Pa55-NoAt!127.0.0.1:5432/test",   # the '@' left out: the password reads as a host
    "postgresql+psycopg2://etl:Pa55-NoAt!@127.0.0.1:54x32/test",  # a port that is no number
    "postgresql+psycopg2://etl:Pa55-NoAt!@[::1:5432/test",        # an unclosed IPv6 bracket
])
def test_a_url_sqlalchemy_cannot_parse_is_refused_without_quoting_it(
        tmp_path: Path, log_stream: io.StringIO, url: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"MATRIX_SOURCE__URL": url})
    message = str(error.value)
    assert "source.url: is not a SQLAlchemy URL" in message and "MATRIX_SOURCE__URL" in message
    assert "Pa55-NoAt" not in message + log_stream.getvalue()
