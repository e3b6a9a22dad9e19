"""A row with a NULL in a key column (SQLite allows one in a composite primary key; any source in a
configured key that is no primary key) is in no key range. It is quarantined with the reason,
never silently left out, wherever it sorts, through every reader. Against fake-gcs-server."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg2
import pytest

from matrix_sync.stack import LocalStack
from shared import gcs
from shared.extractor.run import extract_tables
from tests.support import write_config

pytestmark = pytest.mark.stack
ROWS = [("x", None, "1"), ("x", 1, "2"), (None, None, "3"), (None, 2, "4"), ("y", 3, "5"), ("a", 0, "6")]
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _sqlite(tmp_path: Path, table: str) -> str:
    database = tmp_path / "keys.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE {table} (a text, b int, v text, PRIMARY KEY (a, b))")
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", ROWS)
    return f"sqlite:///{database}"


def _postgres(_tmp_path: Path, table: str) -> str:  # NULLs sort last here
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (a text, b int, v text)")
        cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", ROWS)
    return POSTGRES


@pytest.mark.parametrize(("source", "reader"), [(_sqlite, "arrow"), (_sqlite, "dbapi"), (_postgres, "arrow")],
                         ids=["sqlite-arrow", "sqlite-dbapi", "postgresql"])
def test_rows_without_a_whole_key_are_quarantined(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                  source, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    if reader == "dbapi":
        monkeypatch.setenv("MATRIX_SOURCE_READER", "dbapi")
    table = f"null_keys_{unique_name}"
    url = source(tmp_path, table)
    try:
        config = write_config(tmp_path / "c.yaml", url=url, tables={table: ["a", "b"]}, suffix=unique_name,
                              chunk_rows=1)
        stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                               dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
        (result,) = extract_tables(config)
    finally:
        if url == POSTGRES:
            with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection:
                connection.cursor().execute(f"DROP TABLE {table}")
    assert (result.rows, result.quarantined) == (3, 3)
    manifest = json.loads(gcs.read(*gcs.split_uri(result.manifest_uri)))
    assert manifest["quarantine"]["rows"] == 3
    entries = [json.loads(line) for uri in manifest["quarantine"]["uris"]
               for line in gcs.read(*gcs.split_uri(uri)).splitlines()]
    assert sorted(e["row"][2] for e in entries) == ["1", "3", "4"]  # text is written as JSON text
    reasons = {e["row"][2]: e["reason"] for e in entries}
    assert reasons["1"] == "ValueError: key column(s) ['b'] NULL: a row without its whole key cannot be matched"
    assert reasons["3"].startswith("ValueError: key column(s) ['a', 'b'] NULL")
