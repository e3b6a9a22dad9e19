"""Helpers for tests that compare BigQuery with the source row by row."""
from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
import yaml

from matrix_sync import sample
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config, load_config
from shared.extractor.source import connect, discover
from shared.hashing import canonical_text
from shared.identifiers import quote_bigquery
from shared.types import arrow_value_converter


def write_config(path: Path, *, url: str, tables: dict[str, list[str]], suffix: str, chunk_rows: int = 500) -> Config:
    """An empty key list leaves the key to the source (a table without one is keyless)."""
    project = f"proj-{suffix}"
    path.write_text(yaml.safe_dump({
        "source": {"url": url},
        "tables": [{"name": name, "key": key} if key else {"name": name} for name, key in tables.items()],
        "gcs": {"bucket": f"bucket-{suffix}"},
        "bigquery": {"project": project, "dataset": f"ds_{suffix}"},
        "pubsub": {"project": project},
        "extract": {"chunk_rows": chunk_rows},
        "run": {"wait_timeout_s": 120},
    }))
    return load_config(path)


def ensure_resources(stack: LocalStack, config: Config) -> None:
    """The config's bucket, datasets, topics and subscriptions, created in `stack`."""
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)


def orders_config(stack: LocalStack, tmp_path: Path, suffix: str, rows: int) -> tuple[Path, Config]:
    """A SQLite source of one table, orders(id INTEGER PRIMARY KEY, amount INTEGER) holding ids 1..rows
    with amount id * 10, and its config with what it names created in `stack`."""
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 10) for i in range(1, rows + 1)])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"orders": ["id"]},
                          suffix=suffix)
    ensure_resources(stack, config)
    return database, config


def sample_config(stack: LocalStack, path: Path, *, seed: int, tables: dict[str, list[str]], suffix: str) -> Config:
    """The tiny sample Matrix database beside `path`, a config for its `tables` at `path`, and what
    the config names created in `stack`."""
    database = path.parent / "matrix.db"
    sample.create_sample(database, "tiny", seed=seed)
    config = write_config(path, url=f"sqlite:///{database}", tables=tables, suffix=suffix)
    ensure_resources(stack, config)
    return config


def _canonical(values: Sequence[object]) -> tuple[str | None, ...]:
    return tuple(canonical_text(v) for v in values)


def source_rows(config: Config, table_name: str) -> dict[tuple, tuple]:
    """Every source row by key, values converted as the extractor converts them, in canonical text."""
    engine = connect(config.source)
    try:
        source = discover(engine, config.table(table_name))
        converters = [arrow_value_converter(c.bq_type) for c in source.schema.columns]
        positions = source.schema.key_positions
        with engine.connect() as connection:
            rows = connection.execute(sa.select(*source.table.columns)).all()
        out = {}
        for row in rows:
            converted = [convert(v) for convert, v in zip(converters, row, strict=True)]
            out[tuple(canonical_text(converted[p]) for p in positions)] = _canonical(converted)
        return out
    finally:
        engine.dispose()


def bigquery_rows(config: Config, table_name: str) -> dict[tuple, tuple]:
    """Every row of the BigQuery table by key, the source's columns only, in canonical text."""
    engine = connect(config.source)
    try:
        schema = discover(engine, config.table(table_name)).schema
    finally:
        engine.dispose()
    target = config.table(table_name).target_table
    columns = ", ".join(quote_bigquery(c.bq_name) for c in schema.columns)
    table = quote_bigquery(config.bigquery.project, config.bigquery.dataset, target)
    rows = bq.query(config.bigquery.project, f"SELECT {columns} FROM {table}")
    positions = schema.key_positions
    return {tuple(canonical_text(row[p]) for p in positions): _canonical(tuple(row.values())) for row in rows}


def assert_tables_equal(config: Config) -> None:
    for table in config.tables:
        expected = source_rows(config, table.name)
        actual = bigquery_rows(config, table.name)
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        changed = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
        assert not (missing or extra or changed), (
            f"{table.name}: {len(missing)} missing, {len(extra)} extra, {len(changed)} changed; "
            f"e.g. {[(k, expected.get(k), actual.get(k)) for k in (list(missing) + list(extra) + changed)[:3]]}"
        )


def wait_for_applied(config: Config, table_name: str, timeout_s: float = 120) -> None:
    """Polls the ledger until some snapshot of the table is applied (for snapshots not written by the test)."""
    import time

    table_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{config.table(table_name).target_table}"
    ledger = quote_bigquery(config.bigquery.project, config.bigquery.dataset, "_sync_ledger")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bq.get_table(f"{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger") is not None:
            rows = bq.query(config.bigquery.project,
                            f"SELECT COUNT(*) AS n FROM {ledger} WHERE table_id = '{table_id}' AND status = 'applied'")
            if rows[0]["n"]:
                return
        time.sleep(0.5)
    raise AssertionError(f"no applied snapshot of {table_id} within {timeout_s} s")
