"""A table of large documents is read in chunks cut by bytes (`extract.chunk_bytes`), through every
reader of every server source, with every row kept in key order: memory follows the budget, not
the number of rows a chunk may hold. Where the first rows are narrow and later ones wide, a chunk
passes its budget by a few rows at most: SQLite's Arrow reader (whose batch size is fixed per
statement) sizes its batches on the table's widest row, or hands the table to the DBAPI reader
where that leaves too few rows a batch, and the DBAPI readers fetch a few rows at a time. A
snapshot's parts are cut the same way."""
from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.config import SourceConfig, TableConfig
from shared.extractor import source as source_module
from shared.extractor.arrow_stream import READER_ENV, ArrowChunk
from shared.extractor.chunk_size import FETCH_ROWS, STREAMED_FETCH_ROWS
from shared.extractor.source import connect, discover, stream_rows
from shared.manifest import parse_manifest
from tests.support import ensure_resources, write_config

BODY = 20_000
ROWS = 300
BUDGET = 1 << 20
SERVERS = {"postgresql": "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
           "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test"}


def _documents(first_narrow: int = 0, rows: int = ROWS) -> list[tuple[int, str]]:
    return [(i, f"{i}:" + ("n" if i <= first_narrow else "w" * BODY)) for i in range(1, rows + 1)]


def _chunks(url: str, table: str, reader: str, monkeypatch: pytest.MonkeyPatch,
            after: tuple | None = None) -> list[tuple[str, list[tuple]]]:
    monkeypatch.setenv(READER_ENV, reader)
    engine = connect(SourceConfig(url=url))
    try:
        source = discover(engine, TableConfig(name=table))
        return [(type(chunk).__name__, _rows(chunk))
                for chunk in stream_rows(engine, source, 10_000, after, chunk_bytes=BUDGET)]
    finally:
        engine.dispose()


def _rows(chunk: Sequence[tuple]) -> list[tuple]:
    """An Arrow chunk's own columns, as the snapshot takes them (iterating it reads it again)."""
    if isinstance(chunk, ArrowChunk):
        return list(zip(*(column.to_pylist() for column in chunk.columns), strict=True))
    return [tuple(row) for row in chunk]


def _assert_cut_by_bytes(chunks: list[tuple[str, list[tuple]]], rows: list[tuple[int, str]]) -> None:
    assert [row for _, chunk in chunks for row in chunk] == rows
    sizes = [sum(len(body) for _, body in chunk) for _, chunk in chunks]
    assert len(chunks) >= ROWS * BODY // BUDGET
    assert all(size <= BUDGET + FETCH_ROWS * BODY // 8 for size in sizes), sizes  # a fetch past it at most
    assert all(size >= BUDGET - BODY for size in sizes[:-1]), sizes                # and not cut long before


@pytest.fixture
def sqlite_documents(tmp_path: Path) -> Iterator[tuple[str, str]]:
    database = tmp_path / "docs.db"
    yield f"sqlite:///{database}", str(database)


@pytest.mark.parametrize("reader", ["arrow", "dbapi"])
def test_sqlite_documents_are_read_in_chunks_cut_by_bytes(
    sqlite_documents: tuple[str, str], reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, path = sqlite_documents
    rows = _documents()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    chunks = _chunks(url, "docs", reader, monkeypatch)
    assert {kind for kind, _ in chunks} == {"ArrowChunk" if reader == "arrow" else "SourceChunk"}
    _assert_cut_by_bytes(chunks, rows)


def test_sqlite_rows_wider_than_the_first_ones_are_batched_at_the_widest(
    sqlite_documents: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, path = sqlite_documents
    rows = _documents(first_narrow=260, rows=560)  # batches were sized on the first 256 rows
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    chunks = _chunks(url, "docs", "arrow", monkeypatch)
    assert [row for _, chunk in chunks for row in chunk] == rows
    assert {kind for kind, _ in chunks} == {"ArrowChunk"}
    assert max(sum(len(body) for _, body in chunk) for _, chunk in chunks) <= BUDGET


@pytest.mark.parametrize(("wide", "arrow_kind"), [(BODY, "ArrowChunk"), (300_000, "SourceChunk")])
@pytest.mark.parametrize("reader", ["arrow", "dbapi", "sqlalchemy"])
def test_a_run_of_wide_rows_after_narrow_ones_passes_the_budget_by_a_few_rows_at_most(
    sqlite_documents: tuple[str, str], reader: str, wide: int, arrow_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prober's table (narrow rows, then 9 MB ones) at a smaller scale: a fetch of 256 rows
    after the narrow ones, or an Arrow batch sized on them, held the whole run of wide rows."""
    url, path = sqlite_documents
    run = 6 * BUDGET // wide  # six budgets of wide rows
    rows = [(i, f"{i}:n", f"{i}:t") for i in range(1, 301)]  # a BLOB column would leave ADBC out
    rows += [(i, f"{i}:" + "w" * wide if i % 2 else None, None if i % 2 else f"{i}:" + "v" * wide)
             for i in range(301, 301 + run)]
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT, other TEXT)")
        connection.executemany("INSERT INTO docs VALUES (?, ?, ?)", rows)
    if reader == "sqlalchemy":  # the path of the drivers read through SQLAlchemy (pymssql)
        monkeypatch.setattr(source_module, "reads_from_cursor", lambda _dialect: False)
    chunks = _chunks(url, "docs", "dbapi" if reader == "sqlalchemy" else reader, monkeypatch)
    assert [row for _, chunk in chunks for row in chunk] == rows
    held = [sum(len(value) for row in chunk for value in row[1:] if value is not None) for _, chunk in chunks]
    if reader == "arrow":
        assert {kind for kind, _ in chunks} == {arrow_kind}
    bound = BUDGET if (reader, arrow_kind) == ("arrow", "ArrowChunk") else BUDGET + STREAMED_FETCH_ROWS * wide
    assert max(held) <= bound, held


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("reader", ["arrow", "dbapi"])
def test_server_documents_are_read_in_chunks_cut_by_bytes(
    server: str, reader: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, table = SERVERS[server], f"docs_{unique_name}"
    rows = _documents()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT)"))
            connection.execute(sa.text(f"INSERT INTO {table} VALUES (:id, :body)"),
                               [{"id": i, "body": body} for i, body in rows])
        chunks = _chunks(url, table, reader, monkeypatch)
        # a range after a key (a resumed stream, a parallel key range) streams alike: ADBC's
        # PostgreSQL driver read a statement with parameters in one batch
        later = _chunks(url, table, reader, monkeypatch, after=(10,))
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
    expected_kind = "ArrowChunk" if (server, reader) == ("postgresql", "arrow") else "SourceChunk"
    assert {kind for kind, _ in chunks} == {kind for kind, _ in later} == {expected_kind}
    _assert_cut_by_bytes(chunks, rows)
    _assert_cut_by_bytes(later, rows[10:])


@pytest.mark.stack
def test_a_snapshot_of_documents_is_written_in_parts_cut_by_bytes(
    stack: LocalStack, sqlite_documents: tuple[str, str], unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, path = sqlite_documents
    rows = [(i, secrets.token_hex(BODY // 2)) for i in range(1, ROWS + 1)]  # random: no compression helps
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
        connection.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    monkeypatch.setenv("MATRIX_EXTRACT__CHUNK_BYTES", str(BUDGET))
    config = write_config(Path(path).with_suffix(".yaml"), url=url, tables={"docs": ["id"]}, suffix=unique_name,
                          chunk_rows=10_000)
    ensure_resources(stack, config)

    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=120)

    assert (report.load_status, report.reconciliation, report.source_rows) == ("applied", "match", ROWS), report
    manifest = parse_manifest(gcs.read(config.gcs.bucket, extracted.manifest_uri.split("/", 3)[3]),
                              bucket=config.gcs.bucket, prefix=config.gcs.prefix)
    part_rows = [part.rows for part in manifest.parts]
    assert sum(part_rows) == ROWS and len(part_rows) >= 3
    assert max(part_rows) * BODY <= 2 * BUDGET + BODY, part_rows  # a part: the budget plus one chunk at most
