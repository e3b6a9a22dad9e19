"""A table with neither a primary key nor a configured key, through the whole chain from SQLite and
PostgreSQL: duplicate rows, the deletion of one of three identical rows, an update and a new copy
of an existing row all replicate exactly (BigQuery holds the source's multiset of rows), the ledger
records the net counts, reconciliation matches and validation passes with its key checks skipped;
`compare-keys` counts copies per row hash and `--repair` restores them."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from matrix_sync import compare as cmp
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import compare_keys
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config, load_config
from shared.extractor.source import connect, discover
from shared.hashing import canonical_text
from shared.identifiers import quote_bigquery
from shared.topology import RECONCILIATION_TABLE, VALIDATION_TABLE
from shared.types import arrow_value_converter
from tests.support import ensure_resources
from tests.support_reconcile import execute, republish_loaded, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DDL = "CREATE TABLE {name} (sku integer, qty integer, note varchar(40))"
ROWS = ([(1, 5, "same")] * 3 + [(2, 1, None), (3, 2, "x")] + [(4, None, "dup")] * 2
        + [(10 + i, i, f"row {i}") for i in range(20)])
# cycle 2: one of the three identical rows deleted, one row updated, a second copy of an existing row
CHANGES = {
    "sqlite": ["DELETE FROM {name} WHERE rowid = (SELECT MIN(rowid) FROM {name} WHERE sku = 1)",
               "UPDATE {name} SET qty = 99 WHERE sku = 3", "INSERT INTO {name} VALUES (2, 1, NULL)"],
    "postgresql": ["DELETE FROM {name} WHERE ctid = (SELECT ctid FROM {name} WHERE sku = 1 LIMIT 1)",
                   "UPDATE {name} SET qty = 99 WHERE sku = 3", "INSERT INTO {name} VALUES (2, 1, NULL)"],
}


def _sqlite_source(tmp_path: Path, name: str) -> tuple[str, Callable[[list[str]], None], Callable[[], None]]:
    database = tmp_path / "matrix.db"

    def run(statements: list[str]) -> None:
        with sqlite3.connect(database) as connection:
            for statement in statements:
                connection.execute(statement)

    with sqlite3.connect(database) as connection:
        connection.execute(DDL.format(name=name))
        connection.executemany(f"INSERT INTO {name} VALUES (?, ?, ?)", ROWS)
    return f"sqlite:///{database}", run, lambda: None


def _postgres_source(name: str) -> tuple[str, Callable[[list[str]], None], Callable[[], None]]:
    engine = sa.create_engine(POSTGRES_URL)

    def run(statements: list[str]) -> None:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))

    run([DDL.format(name=name)])
    with engine.begin() as connection:
        connection.execute(sa.text(f"INSERT INTO {name} VALUES (:sku, :qty, :note)"),
                           [{"sku": s, "qty": q, "note": n} for s, q, n in ROWS])

    def drop() -> None:
        run([f"DROP TABLE IF EXISTS {name}"])
        engine.dispose()
    return POSTGRES_URL, run, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str
           ) -> Iterator[tuple[str, str, str, Callable[[list[str]], None]]]:
    name = f"keyless_{unique_name}"
    url, run, drop = _sqlite_source(tmp_path, name) if request.param == "sqlite" else _postgres_source(name)
    try:
        yield request.param, name, url, run
    finally:
        drop()


def _config(path: Path, url: str, name: str, suffix: str) -> Config:
    project = f"proj-{suffix}"
    path.write_text(yaml.safe_dump({
        "source": {"url": url}, "tables": [{"name": name}], "gcs": {"bucket": f"bucket-{suffix}"},
        "bigquery": {"project": project, "dataset": f"ds_{suffix}"}, "pubsub": {"project": project},
        "extract": {"chunk_rows": 7, "mode": "delta"}, "run": {"wait_timeout_s": 120},
    }))
    return load_config(path)


def source_multiset(config: Config, name: str) -> list[tuple[str | None, ...]]:
    """Every source row, duplicates included, converted as the extractor converts them, sorted."""
    engine = connect(config.source)
    try:
        source = discover(engine, config.table(name))
        converters = [arrow_value_converter(c.bq_type) for c in source.schema.columns]
        with engine.connect() as connection:
            rows = connection.execute(sa.select(*source.table.columns)).all()
    finally:
        engine.dispose()
    return sorted((tuple(canonical_text(f(v)) for f, v in zip(converters, row, strict=True)) for row in rows), key=repr)


def bigquery_multiset(config: Config, name: str) -> list[tuple[str | None, ...]]:
    table = quote_bigquery(config.bigquery.project, config.bigquery.dataset, config.table(name).target_table)
    rows = bq.query(config.bigquery.project, f"SELECT sku, qty, note, _key_hash, _row_hash FROM {table}")
    assert all(r["_key_hash"] == r["_row_hash"] for r in rows)  # a keyless row's key is its row hash
    return sorted((tuple(canonical_text(r[c]) for c in ("sku", "qty", "note")) for r in rows), key=repr)


def test_keyless_table_replicates_its_multiset_of_rows(
    source: tuple[str, str, str, Callable[[list[str]], None]], stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    kind, name, url, run = source
    config = _config(tmp_path / "config.yaml", url, name, unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    expected_counts = [(len(ROWS), 0, 0), (2, 0, 2)]  # cycle 2: +updated +copy, -one of three -old version
    for cycle, counts in enumerate(expected_counts):
        (extracted,) = extract_all(config)
        (report,) = wait_for_chain(config, [extracted], timeout_s=180)
        assert extracted.mode == "full"  # the config asks for deltas; a keyless table cannot have one
        assert (report.load_status, report.reconciliation, report.validation) == ("applied", "match", "passed"), report
        assert (report.rows_inserted, report.rows_updated, report.rows_deleted) == counts
        expected = source_multiset(config, name)
        assert (expected.count(("1", "5", "same")), expected.count(("2", "1", None))) == (3 - cycle, 1 + cycle)
        assert bigquery_multiset(config, name) == expected
        checks = {r["check_name"]: r for r in wait_for_rows(config, VALIDATION_TABLE, extracted.run_id, 1)}
        assert checks["key_unique"]["passed"] and checks["key_unique"]["observed"] == "skipped: keyless table"
        if cycle == 0:
            run([statement.format(name=name) for statement in CHANGES[kind]])


def test_compare_keys_counts_copies_of_a_keyless_table_and_repair_restores_them(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"keyless_{unique_name}"
    url, _, _ = _sqlite_source(tmp_path, name)
    config_path = tmp_path / "config.yaml"
    config = _config(config_path, url, name, unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=180)
    assert report.reconciliation == "match", report
    engine = connect(config.source)
    try:
        assert cmp.compare_table(config, engine, config.table(name)).clean
        # behind the pipeline's back: a third copy of a row held twice, a row gone, a value edited
        # without touching the hash columns
        execute(config, f"INSERT INTO {{t:{name}}} SELECT * FROM {{t:{name}}} WHERE sku = 4 LIMIT 1")
        execute(config, f"DELETE FROM {{t:{name}}} WHERE sku = 3")
        execute(config, f"UPDATE {{t:{name}}} SET note = 'edited' WHERE sku = 10")
        found = cmp.compare_table(config, engine, config.table(name))
    finally:
        engine.dispose()
    assert found.deep and found.keyless
    details = sorted((d.kind, d.detail) for d in found.differences)
    assert details == [(cmp.DUPLICATE, "2 copies in the source, 3 in BigQuery"),
                       (cmp.EXTRA, "0 copies in the source, 1 in BigQuery"),
                       (cmp.MISSING, "1 copy in the source, 0 in BigQuery"),
                       (cmp.MISSING, "1 copy in the source, 0 in BigQuery")]
    repaired = CliRunner().invoke(compare_keys, ["--config", str(config_path), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert bigquery_multiset(config, name) == source_multiset(config, name)


def test_keyless_rows_written_by_hand_without_hashes_are_deleted(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """A hand-written INSERT leaves `_row_hash` NULL. The reconciler counted such a row missing and
    kept it, and every full load was refused (`IN` never matches a NULL), for ever."""
    name = f"keyless_{unique_name}"
    url, _, _ = _sqlite_source(tmp_path, name)
    config = _config(tmp_path / "config.yaml", url, name, unique_name)
    ensure_resources(stack, config)
    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=180)
    assert report.reconciliation == "match", report
    by_hand = "INSERT INTO {t:%s} (sku, qty, note) VALUES (77, 1, 'by hand')" % config.table(name).target_table

    execute(config, by_hand)
    republish_loaded(config, name, extracted.run_id, extracted.manifest_uri)
    certificate = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 2)[-1]
    assert (certificate["verdict"], certificate["missing_rows"], certificate["extra_rows"]) == ("mismatch", 0, 1)
    assert certificate["rows_deleted"] == 1
    assert bigquery_multiset(config, name) == source_multiset(config, name)

    execute(config, by_hand)
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=180)
    assert (report.load_status, report.rows_deleted, report.reconciliation) == ("applied", 1, "match"), report
    assert bigquery_multiset(config, name) == source_multiset(config, name)
