"""The source password never comes from the config file: from the environment or Secret Manager only,
read with the real Secret Manager client (REST transport) from a local stand-in for the API."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import secret_manager
from shared.config import PASSWORD_VARIABLE, ConfigError, load_config
from shared.credentials import source_url
from shared.secret_manager import SecretAccessError, access_secret
from shared.secrets import redact
from tests.fake_secret_manager import FakeSecretManager, fake_secret_manager

CONFIG = """
source:
  url: {url}
{extra}tables: [{{name: t, key: [id]}}]
gcs: {{bucket: b-bucket}}
bigquery: {{project: acme-dwh, dataset: d}}
pubsub: {{project: acme-dwh}}
"""
VERSION = "projects/acme-dwh/secrets/matrix-source-password/versions/latest"


def write(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "matrix-sync.yaml"
    path.write_text(CONFIG.format(url=url, extra=extra))
    return path


@pytest.fixture
def secrets_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSecretManager]:
    with fake_secret_manager() as api:
        monkeypatch.setenv(secret_manager.EMULATOR_HOST, api.endpoint)
        secret_manager.secret_manager_client.cache_clear()
        yield api
    secret_manager.secret_manager_client.cache_clear()


@pytest.mark.parametrize(("url", "extra", "key"), [
    ("mssql+pymssql://etl:Fil3Pw-1@db:1433/Matrix", "", "source.url"),
    ("'postgresql://etl@db/matrix?password=Fil3Pw-1'", "", "source.url"),
    ("'mssql+pymssql://etl@db/Matrix?charset=utf8&PWD=Fil3Pw-1'", "", "source.url"),
    ("mssql+pymssql://etl@db/Matrix", "  password: Fil3Pw-1\n", "source.password"),
])
def test_a_password_in_the_file_is_refused_naming_file_key_and_the_alternatives(
        tmp_path: Path, url: str, extra: str, key: str) -> None:
    path = write(tmp_path, url, extra)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"MATRIX_SOURCE__URL": "mssql+pymssql://etl@db/Matrix"})
    message = str(error.value)
    assert message.startswith(f"{path}: {key}: ")
    assert PASSWORD_VARIABLE in message and "MATRIX_SOURCE__URL" in message and "source.password_secret" in message
    assert "Fil3Pw-1" not in message and "\n" not in message


def test_an_empty_password_is_no_password(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "mysql+pymysql://root:@127.0.0.1:3306/test"), environ={})
    assert source_url(config.source).password in (None, "")


def test_a_url_with_a_password_from_the_environment_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "mssql+pymssql://etl@db/Matrix")
    config = load_config(path, environ={"MATRIX_SOURCE__URL": "mssql+pymssql://etl:EnvUrlPw-2@db/Matrix"})
    assert source_url(config.source).password == "EnvUrlPw-2"
    assert "EnvUrlPw-2" not in redact("login failed: EnvUrlPw-2")


def test_a_password_variable_is_added_to_the_url_and_masked(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "mssql+pymssql://etl@db/Matrix"), environ={PASSWORD_VARIABLE: "EnvPw-3;x"})
    url = source_url(config.source)
    assert (url.username, url.password, url.host) == ("etl", "EnvPw-3;x", "db")
    assert "EnvPw-3;x" not in repr(config) + str(config.source) + redact("driver: bad password EnvPw-3;x")


def test_password_secret_is_read_from_secret_manager_at_connect_time(
        tmp_path: Path, secrets_api: FakeSecretManager) -> None:
    secrets_api.versions[VERSION] = "Secr3t Pw/ü@:".encode()
    config = load_config(write(tmp_path, "mssql+pymssql://etl@db/Matrix", f"  password_secret: {VERSION}\n"),
                         environ={})
    assert secrets_api.requests == [], "loading the config reads no secret"
    url = source_url(config.source)
    assert url.password == "Secr3t Pw/ü@:" and url.host == "db"
    assert secrets_api.requests == [f"/v1/{VERSION}:access"]
    assert "Secr3t Pw/ü@:" not in redact(f"cannot log in with Secr3t Pw/ü@: to {url}")


@pytest.mark.parametrize(("extra", "environ", "message"), [
    ("  password_secret: matrix-source-password\n", {}, "is not a secret version"),
    ("  password_secret: projects/p-1/secrets/s/versions/0\n", {}, "is not a secret version"),
    (f"  password_secret: {VERSION}\n", {PASSWORD_VARIABLE: "EnvPw-4"}, "the password is given twice"),
    ("", {"MATRIX_SOURCE__URL": "mssql+pymssql://etl:UrlPw-5@db/M", PASSWORD_VARIABLE: "EnvPw-4"}, "given twice"),
])
def test_bad_password_settings_are_refused(tmp_path: Path, extra: str, environ: dict[str, str], message: str) -> None:
    path = write(tmp_path, "mssql+pymssql://etl@db/Matrix", extra)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ=environ)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "EnvPw-4" not in str(error.value) and "UrlPw-5" not in str(error.value)


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "Secret Manager has no secret version"),
    ("forbidden", "permission denied reading"),
])
def test_secret_errors_are_one_line_without_the_value(secrets_api: FakeSecretManager, setup: str,
                                                      message: str) -> None:
    version = "projects/acme-dwh/secrets/other/versions/7"
    if setup == "forbidden":
        secrets_api.versions[version] = b"NotForYou-6"
        secrets_api.forbidden.add(version)
    with pytest.raises(SecretAccessError) as error:
        access_secret(version)
    text = str(error.value)
    assert message in text and version in text
    assert "NotForYou-6" not in text and "\n" not in text
    assert error.value.__cause__ is None and error.value.__suppress_context__
