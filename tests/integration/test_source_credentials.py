"""A real extraction from MariaDB as a user that needs its password, the password coming from the
environment or from Secret Manager (the real client against tests/fake_secret_manager.py): the
extraction works, and the password is in no log line, error or manifest."""
from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from matrix_sync.stack import LocalStack
from shared import gcs, secret_manager
from shared.config import PASSWORD_VARIABLE, Config, load_config
from shared.extractor.run import extract
from shared.extractor.source import SourceError, connect
from tests.fake_secret_manager import FakeSecretManager, fake_secret_manager

pytestmark = pytest.mark.stack
MARIADB_ROOT = "mysql+pymysql://root@127.0.0.1:3306/test"
VERSION = "projects/acme-dwh/secrets/matrix-source-password/versions/latest"


@dataclass(frozen=True)
class ReaderAccount:
    user: str
    password: str
    table: str


@pytest.fixture
def reader(unique_name: str) -> Iterator[ReaderAccount]:
    """A table and a MariaDB user that may read it only with its password."""
    account = ReaderAccount(f"etl_{unique_name}", f"Pw-{uuid.uuid4().hex[:12]}!;x", f"creds_{unique_name}")
    root = sa.create_engine(MARIADB_ROOT)
    hosts = ("%", "localhost")
    with root.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {account.table} (id INT PRIMARY KEY, name VARCHAR(20))"))
        connection.execute(sa.text(f"INSERT INTO {account.table} VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
        for host in hosts:
            connection.execute(sa.text(f"CREATE USER '{account.user}'@'{host}' IDENTIFIED BY :pw"),
                               {"pw": account.password})
            connection.execute(sa.text(f"GRANT SELECT ON test.{account.table} TO '{account.user}'@'{host}'"))
    try:
        yield account
    finally:
        with root.begin() as connection:
            for host in hosts:
                connection.execute(sa.text(f"DROP USER IF EXISTS '{account.user}'@'{host}'"))
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {account.table}"))
        root.dispose()


@pytest.fixture
def secrets_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSecretManager]:
    with fake_secret_manager() as api:
        monkeypatch.setenv(secret_manager.EMULATOR_HOST, api.endpoint)
        secret_manager.secret_manager_client.cache_clear()
        yield api
    secret_manager.secret_manager_client.cache_clear()


def write_config(tmp_path: Path, reader: ReaderAccount, suffix: str, **source: str) -> Path:
    project = f"proj-{suffix}"
    path = tmp_path / "matrix-sync.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"url": f"mysql+pymysql://{reader.user}@127.0.0.1:3306/test", **source},
        "tables": [{"name": reader.table, "key": ["id"]}],
        "gcs": {"bucket": f"bucket-{suffix}"}, "bigquery": {"project": project, "dataset": f"ds_{suffix}"},
        "pubsub": {"project": project},
    }))
    return path


def ensure_bucket(stack: LocalStack, config: Config) -> None:
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)


@pytest.mark.parametrize("supplied_by", ["password variable", "Secret Manager"])
def test_password_from_environment_or_secret_is_used_and_never_shown(
        stack: LocalStack, tmp_path: Path, unique_name: str, reader: ReaderAccount, secrets_api: FakeSecretManager,
        log_stream: io.StringIO, supplied_by: str) -> None:
    environ = dict(os.environ)
    if supplied_by == "Secret Manager":
        secrets_api.versions[VERSION] = reader.password.encode()
        path = write_config(tmp_path, reader, unique_name, password_secret=VERSION)
    else:
        environ[PASSWORD_VARIABLE] = reader.password
        path = write_config(tmp_path, reader, unique_name)
    config = load_config(path, environ=environ)
    ensure_bucket(stack, config)

    outcome = extract(config, [reader.table], force_full=True)

    assert [r.rows for r in outcome.written] == [3]
    manifest = gcs.read(*gcs.split_uri(outcome.written[0].manifest_uri)).decode()
    shown = log_stream.getvalue() + manifest + repr(config) + repr(outcome)
    assert reader.table in log_stream.getvalue() and reader.password not in shown


def test_without_its_password_the_reader_is_refused(tmp_path: Path, unique_name: str, reader: ReaderAccount) -> None:
    """The extraction above could only have logged in with the password it was given."""
    config = load_config(write_config(tmp_path, reader, unique_name), environ={})
    with pytest.raises(SourceError, match="Access denied"):
        connect(config.source)


@pytest.mark.parametrize(("secret", "message"), [
    ("wrong", "cannot connect to source mysql+pymysql://etl_"),
    ("missing", "cannot read the password of source mysql+pymysql://etl_"),
    ("forbidden", "permission denied reading " + VERSION),
])
def test_secret_problems_are_one_line_without_a_password(tmp_path: Path, unique_name: str, reader: ReaderAccount,
                                                         secrets_api: FakeSecretManager, log_stream: io.StringIO,
                                                         secret: str, message: str) -> None:
    if secret == "wrong":
        secrets_api.versions[VERSION] = b"Wr0ng-Pw-9"
    elif secret == "forbidden":
        secrets_api.versions[VERSION] = reader.password.encode()
        secrets_api.forbidden.add(VERSION)
    config = load_config(write_config(tmp_path, reader, unique_name, password_secret=VERSION), environ={})
    with pytest.raises(SourceError) as error:
        connect(config.source)
    text = str(error.value)
    assert message in text and "\n" not in text
    for password in ("Wr0ng-Pw-9", reader.password):
        assert password not in text + log_stream.getvalue()
