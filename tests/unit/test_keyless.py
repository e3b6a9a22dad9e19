"""Keyless tables (no primary key, no configured key): the schema and manifest contract, the load
by multiplicity, the reconciler's and compare-keys' multiset diffs, the validator's skipped key
checks, the DDL and SQL Server's unordered SELECT. Generated SQL is parsed with sqlglot; the load
and diff statements are also run on SQLite (transpiled) against real rows."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import Counter

import pytest
import sqlalchemy as sa
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from matrix_sync import compare as cmp
from shared.config import TableConfig
from shared.ddl import create_table_ddl
from shared.extractor.delta import find_base
from shared.extractor.source import discover
from shared.hashing import RowHasher
from shared.identifiers import quote_bigquery as q
from shared.loader import keyless_sql
from shared.loader.merge_sql import LoadValues, load_script
from shared.manifest import Delta, Fingerprint, HashSpec, Manifest, ManifestError, Part, Target, parse_manifest
from shared.mssql.catalog import schema_from_catalog
from shared.mssql.select import select_statement
from shared.reconciler import diff as diffs
from shared.reconciler import keyless_diff
from shared.schema import Column, TableSchema
from shared.validator import checks
from shared.validator.thresholds import Thresholds
from tests.sql_parse import script_statements, strict

KEYLESS = TableSchema(columns=[
    Column(name="sku", bq_name="sku", source_type="int", bq_type="INT64"),
    Column(name="note", bq_name="note", source_type="nvarchar(20)", bq_type="STRING", length=20),
], key=[], keyless=True)
KEYED = TableSchema(columns=KEYLESS.columns, key=["sku"])
TARGET, STAGING, LEDGER = q("p", "d", "t"), q("p", "d_staging", "s"), q("p", "d", "_sync_ledger")
VALUES = LoadValues(table_id="p.d.t", source_table="dbo.T", run_id="20261125T101010000001Z-abcdef", sequence=2,
                    mode="full", manifest_uri="gs://b/snapshots/t/r/_manifest.json", source_rows=4, bytes=10,
                    extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))
KNOWN = (exp.Declare, exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Insert, exp.Merge, exp.Delete,
         exp.Select, exp.Update)


def manifest(schema: TableSchema = KEYLESS, **changes: object) -> Manifest:
    values: dict[str, object] = dict(
        format_version=1, run_id="20261125T101010000001Z-abcdef", source_table="dbo.T",
        target=Target(project="p", dataset="d", table="t", pubsub_project="p"), mode="full", sequence=1,
        extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), schema=schema,
        hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[Part(uri="gs://b/snapshots/t/r/part-00000.parquet", rows=3, bytes=1, md5="x")],
        row_count=3, fingerprint=Fingerprint(count=3, xor60=1, sum32=2),
        index_parts=[Part(uri="gs://b/snapshots/t/r/_index/index-00000.parquet", rows=3, bytes=1, md5="y")],
    )
    values.update(changes)
    return Manifest.model_validate(values)


# --- contract ---------------------------------------------------------------------------------


def test_a_table_is_keyed_or_keyless_never_both_nor_neither() -> None:
    with pytest.raises(ValueError, match="keyless table cannot have key columns"):
        TableSchema(columns=KEYLESS.columns, key=["sku"], keyless=True)
    with pytest.raises(ValueError, match="at least one key column, or to be keyless"):
        TableSchema(columns=KEYLESS.columns, key=[])
    assert KEYLESS.key_columns == [] and KEYLESS.key_positions == []
    assert KEYLESS.key_hash_positions == [0, 1] and KEYED.key_hash_positions == [0]
    assert KEYLESS.hash_keyed().key == ["sku", "note"] and KEYED.hash_keyed() is KEYED


def test_the_key_hash_of_a_keyless_row_is_its_row_hash() -> None:
    hasher = RowHasher(KEYLESS.key_hash_positions)
    key_hash, row_hash = hasher((7, None))
    assert key_hash == row_hash
    assert hasher((7, ""))[1] != row_hash  # NULL and '' still differ


def test_the_manifest_carries_keyless_only_when_set_and_refuses_a_keyless_delta() -> None:
    keyed = json.loads(manifest(KEYED).to_json())
    assert "keyless" not in keyed["schema"]  # keyed manifests are byte-for-byte what they were
    text = manifest().to_json()
    assert json.loads(text)["schema"]["keyless"] is True
    assert parse_manifest(text, bucket="b", prefix="snapshots/t/r").table_schema == KEYLESS
    delta = Delta(base_run_id="20261124T101010000001Z-abcdef", deleted_parts=[], deleted_rows=0, chain_length=1)
    raw = json.loads(manifest(KEYED, mode="delta", delta=delta).to_json())
    raw["schema"]["keyless"], raw["schema"]["key"] = True, []
    with pytest.raises(ManifestError, match="keyless table has no delta snapshots"):
        parse_manifest(json.dumps(raw), bucket="b", prefix="snapshots/t/r")


def test_a_keyless_table_never_gets_a_delta_base() -> None:
    # Answered before the ledger is asked: no BigQuery is reachable from a unit test.
    assert find_base("nowhere", "none", "nowhere.none.t", KEYLESS) is None


def test_sqlite_heap_is_discovered_keyless_with_its_nullability(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'heap.db'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE heap (a INTEGER NOT NULL, b TEXT)"))
    config = TableConfig(name="heap")
    schema = discover(engine, config).schema
    assert (schema.keyless, schema.key) == (True, [])
    assert [(c.name, c.nullable) for c in schema.columns] == [("a", False), ("b", True)]
    keyed = discover(engine, TableConfig(name="heap", key=["a"])).schema
    assert (keyed.keyless, keyed.key) == (False, ["a"])
    engine.dispose()


# --- loader -------------------------------------------------------------------------------------


def test_keyless_load_script_parses_and_applies_by_multiplicity_not_merge() -> None:
    script = load_script(KEYLESS, TARGET, STAGING, LEDGER, VALUES)
    kinds = [type(s) for s in script_statements(script, KNOWN)]
    assert exp.Merge not in kinds and exp.Delete in kinds
    assert kinds.count(exp.Insert) == 2  # the ledger row and the rows
    faulty = load_script(KEYLESS, TARGET, STAGING, LEDGER, VALUES, fault=True)
    assert faulty.index("DELETE FROM") < faulty.index("MATRIX_FAULT") < faulty.index(f"INSERT INTO {TARGET}")
    assert "v_rows_after != v_source_rows" in script  # the row-count check still guards the commit
    with pytest.raises(ValueError, match="no delta"):
        load_script(KEYLESS, TARGET, STAGING, LEDGER, VALUES, deleted=q("p", "d_staging", "x"))


def _rows(values: list[tuple[int, str | None]]) -> list[tuple[object, ...]]:
    hasher = RowHasher(KEYLESS.key_hash_positions)
    return [(*row, *hasher(row)) for row in values]


def _sqlite(sql: str) -> str:
    return sqlglot.transpile(sql, read="bigquery", write="sqlite")[0]


def apply_on_sqlite(before: list[tuple[int, str | None]], snapshot: list[tuple[int, str | None]]
                    ) -> tuple[Counter, int, int]:
    """The keyless load's statements, in the script's order, on real rows."""
    db = sqlite3.connect(":memory:")
    for table, rows in (("t", before), ("s", snapshot)):
        db.execute(f"CREATE TABLE {table} (sku INTEGER, note TEXT, _key_hash TEXT, _row_hash TEXT)")
        db.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)", _rows(rows))
    target, staging = q("t"), q("s")
    counts = {name: db.execute(_sqlite(sql)).fetchone()[0]
              for name, sql in keyless_sql.count_queries(target, staging).items()}
    db.execute(_sqlite(keyless_sql.delete_statement(target, staging)))
    db.execute(_sqlite(keyless_sql.insert_statement(KEYLESS, target, staging)))
    after = Counter(db.execute("SELECT sku, note, _key_hash, _row_hash FROM t").fetchall())
    return after, counts["inserted"], counts["deleted"]


def test_deleting_one_of_three_identical_rows_and_duplicating_one_replicates_exactly() -> None:
    before = [(1, "a"), (1, "a"), (1, "a"), (2, "b"), (3, None)]
    # one of the three (1, 'a') deleted, (2, 'b') updated, (3, NULL) duplicated
    after = [(1, "a"), (1, "a"), (2, "B"), (3, None), (3, None)]
    table, inserted, deleted = apply_on_sqlite(before, after)
    assert table == Counter(_rows(after))
    assert (inserted, deleted) == (2, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["x", "y", None])), max_size=12),
       st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["x", "y", None])), max_size=12))
def test_any_table_ends_holding_exactly_the_snapshot_multiset(before: list, snapshot: list) -> None:
    table, inserted, deleted = apply_on_sqlite(before, snapshot)
    assert table == Counter(_rows(snapshot))
    old, new = Counter(before), Counter(snapshot)
    assert (inserted, deleted) == (sum((new - old).values()), sum((old - new).values()))


# --- reconciler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("deep", [False, True])
def test_keyless_diff_and_repair_sql_parse_and_match_on_row_hash(deep: bool) -> None:
    m = manifest()
    sql = diffs.diff_sql(m, "p.d_staging.index_x", "p.d_staging.diff_x", deep=deep)
    strict(sql)
    assert "snapshot_rows" in sql and "FULL OUTER JOIN" in sql
    strict(keyless_diff.counts_sql("p.d_staging.diff_x"))
    script = diffs.repair_script(m, diffs.Diff("p.d_staging.diff_x", "p.d_staging.index_x"), deep=deep)
    kinds = [type(s) for s in script_statements(script, KNOWN)]
    assert exp.Update not in kinds  # a keyless row cannot be re-stamped: nothing identifies it
    assert kinds.count(exp.Delete) == (2 if deep else 1)
    assert "IFNULL(T.`_row_hash`, '-') IN (SELECT D.`_key_hash`" in script


def diff_on_sqlite(snapshot: list[tuple[int, str | None]], table: list[tuple[int, str | None]]
                   ) -> tuple[dict[str, str], dict[str, int]]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (sku INTEGER, note TEXT, _key_hash TEXT, _row_hash TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", _rows(table))
    db.execute("CREATE TABLE i (_key_hash TEXT, _row_hash TEXT)")
    db.executemany("INSERT INTO i VALUES (?, ?)", [r[2:] for r in _rows(snapshot)])
    db.execute("CREATE TABLE diff (kind TEXT, _key_hash TEXT, snapshot_row_hash TEXT, target_row_hash TEXT, "
               "target_rows INTEGER, snapshot_rows INTEGER)")
    m = manifest(target=Target(project="p", dataset="d", table="t", pubsub_project="p"))
    sql = keyless_diff.diff_sql(m, "i", "diff", deep=False).replace(q("p", "d", "t"), q("t"))
    db.execute(_sqlite(sql))
    kinds = dict(db.execute("SELECT _key_hash, kind FROM diff").fetchall())
    return kinds, dict(db.execute(_sqlite(keyless_diff.counts_sql("diff"))).fetchall())


def test_keyless_diff_counts_copies_per_row_hash() -> None:
    hashes = {row[:2]: row[3] for row in _rows([(1, "a"), (2, "b"), (3, None), (4, "d")])}
    snapshot = [(1, "a"), (1, "a"), (2, "b"), (3, None), (3, None)]
    table = [(1, "a"), (2, "b"), (2, "b"), (2, "b"), (3, None), (3, None), (4, "d")]
    kinds, counts = diff_on_sqlite(snapshot, table)
    assert kinds == {hashes[(1, "a")]: diffs.MISSING, hashes[(2, "b")]: diffs.DUPLICATE,
                     hashes[(4, "d")]: diffs.EXTRA}
    assert counts == {diffs.MISSING: 1, diffs.DUPLICATE: 2, diffs.EXTRA: 1}
    assert diff_on_sqlite(snapshot, list(reversed(snapshot))) == ({}, {})


# --- validator, DDL, compare-keys, SQL Server -------------------------------------------------------


def test_validator_skips_the_key_checks_of_a_keyless_table_and_says_so() -> None:
    m = manifest(schema=TableSchema(columns=[*KEYLESS.columns, Column(
        name="qty", bq_name="qty", source_type="smallint", bq_type="INT64", nullable=False)], key=[], keyless=True))
    probes = checks._probes(m, Thresholds())
    assert [p.name for p in probes] == ["row_count", "not_null:qty", "range:sku", "max_length:note", "range:qty"]
    expressions = ", ".join(f"{sql} AS {alias}" for p in probes for alias, sql in p.sql.items())
    strict(f"SELECT {expressions} FROM {TARGET}")
    skipped = checks._keyless("key_unique")
    assert skipped.passed and skipped.observed == "skipped: keyless table" and "row hash" in skipped.message


def test_keyless_ddl_clusters_on_the_row_hash_and_requires_no_data_column() -> None:
    ddl = create_table_ddl(KEYLESS, "p", "d", "t", source_table="dbo.T")
    statement = strict(ddl.split("\n", 2)[2])
    assert isinstance(statement, exp.Create)
    assert "CLUSTER BY `_row_hash`" in ddl
    assert "`sku` INT64," in ddl and "`note` STRING," in ddl


def test_compare_keys_diffs_a_keyless_table_by_copies() -> None:
    rows = _rows([(1, "a"), (2, "b"), (3, None)])
    a, b, c = (r[2] for r in rows)
    source = iter([(a, a, ()), (a, a, ()), (b, b, ()), (c, c, ())])
    target = [{"_key_hash": h} for h in (a, b, b, b, "f" * 32)]
    found = {d.key_hash: (d.kind, d.key, d.detail) for d in cmp.diff_leaves(source, target, KEYLESS)}
    assert found == {a: (cmp.MISSING, (a,), "2 copies in the source, 1 in BigQuery"),
                     b: (cmp.DUPLICATE, (b,), "1 copy in the source, 3 in BigQuery"),
                     c: (cmp.MISSING, (c,), "1 copy in the source, 0 in BigQuery"),
                     "f" * 32: (cmp.EXTRA, ("f" * 32,), "0 copies in the source, 1 in BigQuery")}


def test_sql_server_heap_is_keyless_and_read_without_order_or_ranges() -> None:
    rows = [{"name": "sku", "ordinal": 1, "data_type": "int", "nullable": False},
            {"name": "note", "ordinal": 2, "data_type": "nvarchar", "max_length": 20, "nullable": True}]
    schema = schema_from_catalog(rows, "dbo", "Heap", None)
    assert (schema.keyless, schema.key) == (True, [])
    assert [(c.name, c.nullable) for c in schema.columns] == [("sku", False), ("note", True)]
    statement = select_statement("dbo", "Heap", schema.columns, schema.key)
    parsed = strict(statement.sql, "tsql")
    assert parsed.args.get("order") is None and "ORDER BY" not in statement.sql
    with pytest.raises(ValueError, match="no key ranges"):
        select_statement("dbo", "Heap", schema.columns, [], lower=(1,))
