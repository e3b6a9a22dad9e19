"""A delta leaves rows whose raw source values are unchanged unprepared (`shared.extractor.unchanged`)
and still writes what a full snapshot of the same source would: an index patch that turns the base's
index into the same index (keys, key hashes, row hashes, raw hashes), the same fingerprint, and
exactly the changed rows and deleted keys."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from matrix_sync.stack import LocalStack
from shared import gcs, key_index, raw_hash
from shared.config import Config
from shared.extractor import snapshot
from shared.extractor.delta import Base
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import connect, discover
from shared.loader.index_merge import apply_patch
from shared.manifest import Manifest, parse_manifest
from shared.raw_hash import RAW_HASH_COLUMN
from shared.schema import KEY_HASH_COLUMN
from tests.support import ensure_resources, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
ROWS = 1_000
DDL = {
    "sqlite": ("CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY, amount DECIMAL(12,2), ratio FLOAT, "
               "day DATE, label NVARCHAR(40), note TEXT)"),
    "postgresql": ("CREATE TABLE {t} (id bigint NOT NULL PRIMARY KEY, amount numeric(12,2), ratio double precision, "
                   "day date, label varchar(40), note text)"),
}


def _row(i: int) -> tuple:
    return (i, f"{i * 3 % 1000}.{i % 100:02d}", (i % 7) / 4 if i % 11 else None, f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            f"label {i % 13}", None if i % 5 else f"note {i}")


def _source(kind: str, tmp_path: Path, table: str) -> sa.Engine:
    url = f"sqlite:///{tmp_path / 'source.db'}" if kind == "sqlite" else PG_URL
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        connection.exec_driver_sql(DDL[kind].format(t=table))
        marks = ", ".join(["%s" if kind == "postgresql" else "?"] * 6)
        connection.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", [_row(i) for i in range(1, ROWS + 1)])
    return engine


def _manifest(config: Config, result: snapshot.ExtractResult) -> Manifest:
    bucket, name = gcs.split_uri(result.manifest_uri)
    return parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=name.rsplit("/", 1)[0])


def _read(parts: list) -> pa.Table:
    tables = []
    for part in parts:
        bucket, name = gcs.split_uri(part.uri)
        tables.append(pq.read_table(pa.BufferReader(gcs.read(bucket, name))))
    return pa.concat_tables(tables) if tables else pa.table({})


def _count_prepared_rows(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every chunk ChunkPreparer prepares from now on (until monkeypatch.undo)."""
    prepared_rows: list[int] = []
    original = ChunkPreparer.__call__

    def counting(self: ChunkPreparer, chunk: object) -> object:
        prepared_rows.append(len(chunk))  # type: ignore[arg-type]
        return original(self, chunk)  # type: ignore[arg-type]

    monkeypatch.setattr(ChunkPreparer, "__call__", counting)
    return prepared_rows


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_delta_prepares_only_changed_rows_and_equals_a_full_snapshot(
        kind: str, stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = f"unchanged_{unique_name}"
    engine = _source(kind, tmp_path, table)
    config = write_config(tmp_path / "config.yaml", url=str(engine.url.render_as_string(hide_password=False)),
                          tables={table: ["id"]}, suffix=unique_name, chunk_rows=128)
    ensure_resources(stack, config)
    source_engine = connect(config.source)
    try:
        source = discover(source_engine, config.table(table))
        base_result = snapshot.extract_table(config, source_engine, source, force_full=True)
        base, base_uri = _manifest(config, base_result), base_result.manifest_uri
        assert base.index_raw_hash and _read(base.index_parts).column(RAW_HASH_COLUMN).null_count == 0

        with engine.begin() as connection:  # -0.0 for 0.0 and one cent: changes only a bit pattern or a digit
            connection.exec_driver_sql(f"UPDATE {table} SET ratio = CAST('-0' AS DOUBLE PRECISION) WHERE id = 14")  # was 0.0
            connection.exec_driver_sql(f"UPDATE {table} SET amount = amount + 0.01 WHERE id = 500")
            connection.exec_driver_sql(f"UPDATE {table} SET note = 'edited', label = NULL WHERE id IN (3, 999)")
            connection.exec_driver_sql(f"DELETE FROM {table} WHERE id IN (1, 128, 129, 1000)")
            connection.exec_driver_sql(f"INSERT INTO {table} VALUES (1001, '1.50', 0.5, '2025-01-01', 'new', NULL)")
        changed = {500, 3, 999, 1001}
        # -0.0 has the canonical text of 0.0, so the row hash stays and the row is not shipped, but
        # its raw hash sees the sign, so it is prepared again (SQLite stores it as integer 0 anyway)
        prepared = changed | ({14} if kind == "postgresql" else set())

        prepared_rows = _count_prepared_rows(monkeypatch)
        on_base = Base(base, key_index.of_snapshot(base, base_uri))
        delta = _manifest(config, snapshot._extract(config, source_engine, source, on_base, None,
                                                    snapshot.clock_sequence))
        monkeypatch.undo()
        full_result = snapshot.extract_table(config, source_engine, source, force_full=True)
        full = _manifest(config, full_result)
        on_full = Base(full, key_index.of_snapshot(full, full_result.manifest_uri))
        unchanged = _manifest(config, snapshot._extract(config, source_engine, source, on_full, None,
                                                        snapshot.clock_sequence))
    finally:
        source_engine.dispose()
        engine.dispose()

    assert sum(prepared_rows) == len(prepared)
    assert {row["id"] for row in _read(delta.parts).to_pylist()} == changed
    assert sorted(row["id"] for row in _read(delta.delta.deleted_parts).to_pylist()) == [1, 128, 129, 1000]
    assert delta.fingerprint == full.fingerprint and delta.row_count == ROWS - 4 + 1
    assert not delta.index_parts and delta.index_raw_hash == base.index_raw_hash
    # a delta with nothing to ship still says how raw hashes are computed: its index keeps them
    assert not unchanged.parts and not unchanged.delta.index_patch_parts and not unchanged.delta.deleted_parts
    assert unchanged.index_raw_hash == full.index_raw_hash
    assert sorted(_read(delta.delta.index_patch_parts).column("id").to_pylist()) == sorted(prepared)
    schema = key_index.index_schema(delta.table_schema)
    compacted = apply_patch(key_index.read_batches(base.index_parts, schema.names),
                            key_index.read_batches(delta.delta.index_patch_parts, schema.names),
                            key_index.read_batches(delta.delta.deleted_parts, ["id", KEY_HASH_COLUMN]), ["id"], schema)
    assert pa.concat_tables(list(compacted)).equals(_read(full.index_parts).cast(schema))
    before = {row["id"]: row["_row_hash"] for row in _read(base.index_parts).to_pylist()}
    after = {row["id"]: row["_row_hash"] for row in _read(full.index_parts).to_pylist()}
    assert {key for key, row_hash in after.items() if before.get(key) != row_hash} == changed


def test_a_change_that_sqlite_widening_blurs_is_still_shipped(stack: LocalStack, tmp_path: Path,
                                                              unique_name: str) -> None:
    """ADBC types a SQLite batch by its values: integers beside reals come as doubles (2**53 + 1 and
    2**53 both as 2**53), text beside a blob as bytes ('abc' and X'616263' alike). A raw hash of
    such a batch took those changed rows for unchanged ones."""
    table = f"widened_{unique_name}"
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, n NUMERIC(20,2), t TEXT, flag BOOLEAN)")
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", [
            (1, 2**53 + 1, "abc", 0), (2, 0.5, "x", 1), (3, 123456789012345678, "y", 1), (4, 7, b"\x01", 1)])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={table: ["id"]},
                          suffix=unique_name)
    ensure_resources(stack, config)
    engine = connect(config.source)
    try:
        source = discover(engine, config.table(table))
        base_result = snapshot.extract_table(config, engine, source, force_full=True)
        base = _manifest(config, base_result)
        with sqlite3.connect(database) as connection:
            connection.execute(f"UPDATE {table} SET t = ? WHERE id = 1", (b"abc",))
            connection.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 3")
        on_base = Base(base, key_index.of_snapshot(base, base_result.manifest_uri))
        delta = _manifest(config, snapshot._extract(config, engine, source, on_base, None, snapshot.clock_sequence))
    finally:
        engine.dispose()
    assert {row["id"] for row in _read(delta.parts).to_pylist()} == {1, 3}


def test_a_base_written_by_other_code_is_not_screened(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A raw hash proves the value unchanged, not that this release converts or quarantines it as the
    release that wrote the base did (SQLite BOOLEAN 2 landed as TRUE, then was quarantined, and the
    kept base row stayed TRUE): a base index tagged by other code has every row prepared again."""
    table = f"upgraded_{unique_name}"
    engine = _source("sqlite", tmp_path, table)
    config = write_config(tmp_path / "config.yaml", url=str(engine.url), tables={table: ["id"]},
                          suffix=unique_name, chunk_rows=128)
    ensure_resources(stack, config)
    source_engine = connect(config.source)
    try:
        source = discover(source_engine, config.table(table))
        base_result = snapshot.extract_table(config, source_engine, source, force_full=True)
        written = _manifest(config, base_result)
        assert written.index_raw_hash == raw_hash.tag() and "/code-" in raw_hash.tag()
        older = written.model_copy(update={"index_raw_hash": raw_hash.tag().rsplit("/code-", 1)[0]})
        prepared_rows = _count_prepared_rows(monkeypatch)
        for base, expected in ((written, 0), (older, ROWS)):
            prepared_rows.clear()
            on_base = Base(base, key_index.of_snapshot(base, base_result.manifest_uri))
            delta = _manifest(config, snapshot._extract(config, source_engine, source, on_base, None,
                                                        snapshot.clock_sequence))
            assert sum(prepared_rows) == expected
            assert not delta.parts and delta.fingerprint == written.fingerprint
    finally:
        source_engine.dispose()
        engine.dispose()
