"""A configured key that other rows hold too matches no single row: real BigQuery's MERGE refuses
("must match at most one source row") every load after the first. Every row of such a key is
quarantined with the reason and the rest of the table ships, wherever the copies sort (across
chunks, across parallel key ranges), through every reader; too many duplicated keys mean the key is
not a key and the table fails alone. Real SQLite, PostgreSQL and MariaDB, against fake-gcs-server."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from matrix_sync.cycle import wait_for_chain
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.clients import storage_client
from shared.config import Config, SourceConfig, TableConfig, load_config
from shared.extractor import quarantine
from shared.extractor import source as source_module
from shared.extractor.run import extract, extract_tables
from shared.extractor.source import connect, discover, find_duplicated_keys
from tests.support import write_config

pytestmark = pytest.mark.stack
# 'B' is its own key: text keys compare byte-wise, as BigQuery's MERGE matches them, even where the
# source's collation (MariaDB's default) calls 'b' and 'B' equal
ROWS = [("a", 1, "1"), ("b", 1, "2"), ("b", 1, "3"), ("c", 1, "4"), ("B", 1, "5"), ("d", 1, "6"), ("d", 1, "7"),
        ("d", 1, "8")]
SHIPPED, QUARANTINED = ["'1'", "'4'", "'5'"], ["'2'", "'3'", "'6'", "'7'", "'8'"]
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"


def _sqlite(tmp_path: Path, table: str) -> str:
    database = tmp_path / "keys.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE {table} (a text NOT NULL, b int NOT NULL, v text)")
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", ROWS)
    return f"sqlite:///{database}"


def _server(url: str):  # type: ignore[no-untyped-def]
    def create(_tmp_path: Path, table: str) -> str:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE {table} (a varchar(10) NOT NULL, b int NOT NULL, v text)")
            connection.execute(sa.text(f"INSERT INTO {table} VALUES (:a, :b, :v)"),
                               [{"a": a, "b": b, "v": v} for a, b, v in ROWS])
        engine.dispose()
        return url
    return create


def _drop(url: str, table: str) -> None:
    if url.startswith("sqlite"):
        return
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def _ready(stack: LocalStack, config: Config) -> None:
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)


def _quarantined(manifest_uri: str) -> dict[str, str]:
    manifest = json.loads(gcs.read(*gcs.split_uri(manifest_uri)))
    entries = [json.loads(line) for uri in manifest["quarantine"]["uris"]
               for line in gcs.read(*gcs.split_uri(uri)).splitlines()]
    return {repr(quarantine.decoded(e["row"][2])): e["reason"] for e in entries}  # v is text: its repr, as _shipped


def _shipped(manifest_uri: str, scratch: Path) -> list[str]:
    manifest = json.loads(gcs.read(*gcs.split_uri(manifest_uri)))
    values: list[str] = []
    for part in manifest["parts"]:
        local = scratch / part["uri"].rsplit("/", 1)[-1]
        local.write_bytes(gcs.read(*gcs.split_uri(part["uri"])))
        values += [repr(v) for v in pq.read_table(local).column("v").to_pylist()]
    return sorted(values)


@pytest.mark.parametrize(("source", "reader"), [(_sqlite, "arrow"), (_sqlite, "dbapi"), (_server(POSTGRES), "arrow"),
                                                (_server(MARIADB), "dbapi")],
                         ids=["sqlite-arrow", "sqlite-dbapi", "postgresql", "mariadb"])
def test_every_row_of_a_duplicated_key_is_quarantined(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                      source, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    if reader == "dbapi":
        monkeypatch.setenv("MATRIX_SOURCE_READER", "dbapi")
    table = f"dup_keys_{unique_name}"
    url = source(tmp_path, table)
    try:
        config = write_config(tmp_path / "c.yaml", url=url, tables={table: ["a", "b"]}, suffix=unique_name,
                              chunk_rows=1)
        _ready(stack, config)
        (result,) = extract_tables(config)
    finally:
        _drop(url, table)
    assert (result.rows, result.shipped_rows, result.quarantined) == (3, 3, 5)
    assert _shipped(result.manifest_uri, tmp_path) == SHIPPED
    reasons = _quarantined(result.manifest_uri)
    assert sorted(reasons) == QUARANTINED
    assert reasons["'2'"] == ("ValueError: key ('b', 1) is held by more than one row of the source: none of them "
                              "can be matched, so none is loaded")
    assert reasons["'8'"].startswith("ValueError: key ('d', 1) is held by more than one row")


def test_parallel_key_ranges_quarantine_them_too(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    table = f"dup_ranges_{unique_name}"
    url = _sqlite(tmp_path, table)
    path = tmp_path / "c.yaml"
    write_config(path, url=url, tables={table: ["a", "b"]}, suffix=unique_name, chunk_rows=1)
    document = yaml.safe_load(path.read_text())
    document["extract"]["parallel_ranges"] = 3
    path.write_text(yaml.safe_dump(document))
    config = load_config(path)
    _ready(stack, config)
    (result,) = extract_tables(config)
    assert (result.rows, result.quarantined) == (3, 5)
    assert _shipped(result.manifest_uri, tmp_path) == SHIPPED
    assert sorted(_quarantined(result.manifest_uri)) == QUARANTINED


def test_a_key_most_rows_share_fails_the_table_alone(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "MAX_DUPLICATED_KEYS", 1)
    table = f"not_a_key_{unique_name}"
    url = _sqlite(tmp_path, table)
    with sqlite3.connect(tmp_path / "keys.db") as connection:
        connection.execute(f"CREATE TABLE fine_{unique_name} (id int PRIMARY KEY, v text)")
        connection.execute(f"INSERT INTO fine_{unique_name} VALUES (1, 'x')")
    config = write_config(tmp_path / "c.yaml", url=url, tables={table: ["a"], f"fine_{unique_name}": ["id"]},
                          suffix=unique_name)
    _ready(stack, config)
    outcome = extract(config)
    assert [r.table for r in outcome.written] == [f"fine_{unique_name}"]
    (failed,) = outcome.failed
    assert failed.reason == (f"table {table!r}: key ['a'] is not unique in the source, 2 key values are held by "
                             "more than one row; configure a key that is unique")


def test_a_key_the_source_declares_unique_is_not_counted(tmp_path: Path) -> None:
    database = tmp_path / "declared.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE indexed (a text NOT NULL, b int NOT NULL, v text)")
        connection.execute("CREATE UNIQUE INDEX indexed_a ON indexed (a)")
        connection.execute("CREATE TABLE loose (a text NOT NULL, b int NOT NULL, v text)")
    engine = connect(SourceConfig(url=f"sqlite:///{database}"))
    counted: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_: counted.append(statement) if "HAVING" in statement else None)
    try:
        find_duplicated_keys(engine, discover(engine, TableConfig(name="indexed", key=["a", "b"])))
        assert counted == []  # a unique index within the key: no row can share it
        find_duplicated_keys(engine, discover(engine, TableConfig(name="loose", key=["a", "b"])))
        assert len(counted) == 1
    finally:
        engine.dispose()



@pytest.mark.parametrize("chunk_rows", [1, 500], ids=["across-chunks", "within-a-chunk"])
def test_a_repeat_the_source_was_not_asked_about_fails_the_table_before_its_manifest(
        stack: LocalStack, tmp_path: Path, unique_name: str, chunk_rows: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # as for SQL Server, whose keys are not counted, or a row inserted between the count and the read
    monkeypatch.setattr(source_module, "_declared_unique", lambda _engine, _source: True)
    table = f"uncounted_{unique_name}"
    url = _sqlite(tmp_path, table)
    config = write_config(tmp_path / "c.yaml", url=url, tables={table: ["a", "b"]}, suffix=unique_name,
                          chunk_rows=chunk_rows)
    _ready(stack, config)
    outcome = extract(config)
    assert outcome.written == []
    (failed,) = outcome.failed
    assert failed.reason == (f"table {table!r}: key ('b', 1) is held by more than one row of the source; nothing "
                             "was shipped. Make ['a', 'b'] unique in the source (a primary key or unique index), "
                             "or configure a key that is")
    assert [b.name for b in storage_client().list_blobs(config.gcs.bucket) if b.name.endswith("_manifest.json")] == []


def test_a_delta_meeting_a_repeat_fails_the_table_too(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    table = f"uncounted_delta_{unique_name}"
    database = tmp_path / "delta.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE {table} (a text NOT NULL, v text)")
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?)", [(str(i), "x") for i in range(20)])
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={table: ["a"]},
                          suffix=unique_name, chunk_rows=5)
    _ready(stack, config)
    (first,) = extract_tables(config)
    reports = wait_for_chain(config, [first], timeout_s=120, poll_s=0.2)
    assert reports[0].ok, reports
    monkeypatch.setattr(source_module, "_declared_unique", lambda _engine, _source: True)
    with sqlite3.connect(database) as connection:
        connection.execute(f"INSERT INTO {table} VALUES ('7', 'y')")
    outcome = extract(config)
    assert outcome.written == []  # the delta met the repeat first, then its full snapshot
    assert f"delta of {table} abandoned, taking a full snapshot: source keys out of order" in caplog.text
    assert "key ('7',) is held by more than one row of the source" in outcome.failed[0].reason


def test_a_partial_unique_index_does_not_make_the_key_unique(tmp_path: Path) -> None:
    database = tmp_path / "partial.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE partial (a text NOT NULL, v text)")
        connection.execute("CREATE UNIQUE INDEX partial_a ON partial (a) WHERE v IS NOT NULL")
        connection.executemany("INSERT INTO partial VALUES (?, ?)", [("x", None), ("x", None), ("y", "1")])
    engine = connect(SourceConfig(url=f"sqlite:///{database}"))
    try:
        source = find_duplicated_keys(engine, discover(engine, TableConfig(name="partial", key=["a"])))
    finally:
        engine.dispose()
    assert source.duplicated_keys == 1
