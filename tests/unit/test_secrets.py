import io
import json
import logging
from pathlib import Path

from shared import logs
from shared.config import load_config
from shared.secrets import redact

CONFIG = """
source: {url: 'sqlite:///x.db'}
tables: [{name: t, key: [id]}]
gcs: {bucket: b-bucket}
bigquery: {project: acme-dwh, dataset: d}
pubsub: {project: acme-dwh}
"""


def test_password_from_an_environment_url_never_reaches_a_log_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    load_config(path, environ={"MATRIX_SOURCE__URL": "mssql+pymssql://etl:Pa55%40word!@db/Matrix"})
    stream = io.StringIO()
    logs.configure(stream=stream)
    logger = logging.getLogger("probe")
    logger.error("login failed for etl with Pa55@word! at db")
    try:
        raise RuntimeError("driver said: password=Pa55@word! rejected")
    except RuntimeError:
        logger.exception("connection failed")
    output = stream.getvalue()
    assert "Pa55@word!" not in output
    assert [json.loads(line)["severity"] for line in output.splitlines()] == ["ERROR", "ERROR"]


def test_url_passwords_and_key_value_pairs_are_redacted() -> None:
    text = redact("postgresql://user:hunter2@host/db and pwd=abc123;x")
    assert "hunter2" not in text and "abc123" not in text
    assert "postgresql://user:***@host/db" in text
