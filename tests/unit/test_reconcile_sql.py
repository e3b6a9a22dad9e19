"""The reconciler's generated SQL parsed with a BigQuery grammar, its options, and the segment
drill-down on synthetic data (no emulator needed)."""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import random

import pytest
from sqlglot import exp

from shared import segments
from shared.bq_hash_sql import (
    MAX_QUERY_CHARS,
    DeepHashError,
    canonical_text_sql,
    deep_hash_query,
    deep_hash_unavailable,
    float_scientific_sql,
)
from shared.hashing import RowHasher, TableFingerprint
from shared.identifiers import quote_bigquery as q
from shared.manifest import Fingerprint, HashSpec, Manifest, Part, Target
from shared.reconciler import diff as diffs
from shared.reconciler.certificate import Certificate
from shared.reconciler.options import OptionsError, ReconcileOptions, options_for
from shared.schema import Column, TableSchema
from tests.sql_parse import script_statements, strict

SCHEMA = TableSchema(
    columns=[
        Column(name="id", bq_name="id", source_type="int", bq_type="INT64", nullable=False),
        Column(name="code", bq_name="code", source_type="varchar(10)", bq_type="STRING", nullable=False),
        Column(name="amount", bq_name="amount", source_type="decimal(12,2)", bq_type="NUMERIC"),
        Column(name="fee", bq_name="fee", source_type="float", bq_type="FLOAT64"),
        Column(name="on", bq_name="on", source_type="date", bq_type="DATE"),
        Column(name="at", bq_name="at", source_type="datetime2", bq_type="DATETIME"),
        Column(name="ts", bq_name="ts", source_type="datetimeoffset", bq_type="TIMESTAMP"),
        Column(name="t", bq_name="t", source_type="time", bq_type="TIME"),
        Column(name="ok", bq_name="ok", source_type="bit", bq_type="BOOL"),
        Column(name="raw", bq_name="raw", source_type="varbinary", bq_type="BYTES"),
    ],
    key=["id", "code"],
)
TABLE = q("acme-dwh", "matrix", "things")


def manifest(**changes: object) -> Manifest:
    values: dict[str, object] = dict(
        format_version=1, run_id="20261125T101010000001Z-abcdef", source_table="dbo.Things",
        target=Target(project="acme-dwh", dataset="matrix", table="things", pubsub_project="acme-dwh"),
        mode="full", sequence=1, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), schema=SCHEMA,
        hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[Part(uri="gs://b/snapshots/things/r/part-00000.parquet", rows=3, bytes=1, md5="x")],
        row_count=3, fingerprint=Fingerprint(count=3, xor60=1, sum32=2),
        index_parts=[Part(uri="gs://b/snapshots/things/r/_index/index-00000.parquet", rows=3, bytes=1, md5="y")],
    )
    values.update(changes)
    return Manifest.model_validate(values)


def test_deep_hash_query_is_bigquery_sql_with_every_column_framed() -> None:
    sql = deep_hash_query(SCHEMA, TABLE)
    statement = strict(sql)
    names = [e.alias_or_name for e in statement.expressions]
    assert names == ["id", "code", "_key_hash", "_row_hash", "_deep_key_hash", "_deep_row_hash"]
    assert sql.count("SHA256(") == 2
    assert "NORMALIZE(`code`, NFC)" in sql and "TO_HEX(`raw`)" in sql


@pytest.mark.parametrize("column", SCHEMA.columns, ids=lambda c: c.bq_type)
def test_each_type_has_a_text_expression_that_parses(column: Column) -> None:
    if column.bq_type == "FLOAT64":
        strict(f"SELECT {float_scientific_sql(q(column.bq_name))} FROM {TABLE}")
    else:
        strict(f"SELECT {canonical_text_sql(column, q(column.bq_name))} FROM {TABLE}")


def test_geography_cannot_be_rebuilt() -> None:
    schema = TableSchema(columns=[*SCHEMA.columns, Column(name="g", bq_name="g", source_type="geography",
                                                          bq_type="GEOGRAPHY")], key=["id"])
    with pytest.raises(DeepHashError, match="g"):
        deep_hash_query(schema, TABLE)


def _wide(count: int, bq_type: str = "FLOAT64") -> TableSchema:
    columns = [Column(name=f"c{i}", bq_name=f"c{i}", source_type=bq_type, bq_type=bq_type) for i in range(count)]
    return TableSchema(columns=[SCHEMA.columns[0], *columns], key=["id"])


def test_a_query_past_bigquerys_length_limit_is_refused_not_sent() -> None:
    """About 3,200 characters a FLOAT64 column: 400 of them would be a 1.3 MB query, which BigQuery
    refuses; the reconciler then fingerprints the stored hashes instead (`deep_hash_unavailable`)."""
    assert len(deep_hash_query(_wide(250), TABLE)) < MAX_QUERY_CHARS
    with pytest.raises(DeepHashError, match="401 columns \\(400 FLOAT64\\) takes a [0-9,]+-character query"):
        deep_hash_query(_wide(400), TABLE)
    assert "past BigQuery's limit" in str(deep_hash_unavailable(_wide(400)))
    assert deep_hash_unavailable(SCHEMA) is None


def test_wide_rows_are_joined_by_one_flat_call() -> None:
    sql = deep_hash_query(_wide(250, "INT64"), TABLE)
    assert sql.count("ARRAY_TO_STRING(") == 2 and "CONCAT(IFNULL" not in sql
    strict(sql)


def test_generated_columns_never_collide_with_source_columns() -> None:
    schema = TableSchema(columns=[Column(name="_mx_t0", bq_name="_mx_t0", source_type="int", bq_type="INT64")],
                         key=["_mx_t0"])
    sql = deep_hash_query(schema, TABLE)
    assert "_mxx_t0" in sql
    strict(sql)


@pytest.mark.parametrize("deep", [False, True])
def test_diff_and_repair_sql_parse(deep: bool) -> None:
    m = manifest()
    strict(diffs.diff_sql(m, "acme-dwh.matrix_staging.index_x", "acme-dwh.matrix_staging.diff_x", deep=deep))
    script = diffs.repair_script(m, diffs.Diff("acme-dwh.matrix_staging.diff_x", "acme-dwh.matrix_staging.index_x"),
                                 deep=deep)
    kinds = [type(s) for s in script_statements(script)]
    assert exp.Delete in kinds and exp.Transaction in kinds and exp.Commit in kinds
    assert (exp.Update in kinds) is deep
    assert "v_latest = v_run_id" in script


def test_delta_without_index_cannot_be_diffed() -> None:
    from shared.manifest import Delta

    m = manifest(mode="delta", index_parts=[], delta=Delta(base_run_id="20261124T101010000001Z-abcdef",
                                                           deleted_parts=[], deleted_rows=0, chain_length=1))
    with pytest.raises(diffs.DiffUnavailable):
        diffs.stage_index(m, "tok")


def test_key_values_for_messages_are_json_ready() -> None:
    assert diffs.json_value(5) == 5
    assert diffs.json_value(decimal.Decimal("1.50")) == "1.5"
    assert diffs.json_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert diffs.json_value("MX-1 ") == "MX-1 "


def test_options_merge_defaults_and_table_entries() -> None:
    document = '{"default": {"max_repair_keys": 5}, "tables": {"things": {"deep": true}}}'
    assert options_for("acme-dwh.matrix.things", document) == ReconcileOptions(deep=True, max_repair_keys=5)
    assert options_for("acme-dwh.matrix.other", document) == ReconcileOptions(max_repair_keys=5)
    assert options_for("x.y.z", None) == ReconcileOptions()
    for bad in ('{"deep": true}', "not json", '{"default": {"depth": 3}}'):
        with pytest.raises(OptionsError):
            options_for("x.y.z", bad)


def test_certificate_row_matches_the_results_schema() -> None:
    from shared.results import RECONCILIATION_FIELDS

    row = Certificate("p.d.t", "run", details={"keys": {"missing": [[1]]}}).row()
    assert set(row) == {f.name for f in RECONCILIATION_FIELDS}
    assert row["details"] == '{"keys": {"missing": [[1]]}}'


# --- segments ------------------------------------------------------------------------------------


def _hashes(rows: dict[int, str]) -> list[tuple[str, str]]:
    hasher = RowHasher([0])
    return [hasher((key, value)) for key, value in rows.items()]


def _index(pairs: list[tuple[str, str]]) -> segments.SegmentIndex:
    index = segments.SegmentIndex()
    for key_hash, row_hash in pairs:
        index.add(key_hash, row_hash)
    return index


def test_drill_finds_exactly_the_differing_segments() -> None:
    rng = random.Random(3)
    source = {i: f"value {rng.random()}" for i in range(20_000)}
    target = dict(source)
    del target[17]                      # missing
    target[99_999] = "extra"            # extra
    target[4242] = "edited"             # changed
    left, right = _index(_hashes(source)), _index(_hashes(target))
    found = segments.drill(left.level, right.level, leaf_rows=64)
    wanted = {kh for kh, _ in _hashes({17: source[17], 99_999: "extra", 4242: "edited"})}
    assert len(found.leaves) == 3
    assert all(any(kh.startswith(leaf) for kh in wanted) for leaf in found.leaves)
    assert found.levels >= 2
    assert found.compared_segments < 200  # a few segments per level, not the 65,536 leaves


def test_equal_sides_stop_after_one_level() -> None:
    pairs = _hashes({i: str(i) for i in range(1000)})
    found = segments.drill(_index(pairs).level, _index(list(reversed(pairs))).level)
    assert found.leaves == [] and found.levels == 1 and found.compared_segments == 16


def test_segment_levels_merge_to_the_table_fingerprint() -> None:
    pairs = _hashes({i: str(i) for i in range(500)})
    index = _index(pairs)
    whole = TableFingerprint()
    for _, row_hash in pairs:
        whole.add(row_hash)
    for depth in (1, 2, 4):
        merged = TableFingerprint()
        for fingerprint in index.level(depth).values():
            merged.merge(fingerprint)
        assert merged == whole


def test_segment_sql_and_prefix_condition_parse() -> None:
    sql, params = segments.segment_sql(TABLE, key_hash=q("_key_hash"), row_hash=q("_row_hash"), depth=3,
                                       parents=["ab", "0f"])
    strict(sql)
    assert params[0].values == ["0f", "ab"]
    where, params = segments.prefix_condition(q("_key_hash"), ["a", "bc", "bd"])
    strict(f"SELECT 1 FROM {TABLE} WHERE {where}")
    assert [p.values for p in params] == [["a"], ["bc", "bd"]]
    with pytest.raises(ValueError):
        segments.prefix_condition(q("_key_hash"), ["xyz"])


def test_row_hash_is_sha256_of_the_framed_text() -> None:
    # the rule the SQL rebuilds: frames "<len>:<text>" or "~", concatenated, SHA256, 32 hex digits
    key_hash, row_hash = RowHasher([0])((1, None, "é"))
    assert row_hash == hashlib.sha256("1:1~1:é".encode()).hexdigest()[:32]
    assert key_hash == hashlib.sha256(b"1:1").hexdigest()[:32]


def test_first_depth_keeps_segments_near_the_leaf_size() -> None:
    assert [segments.first_depth(n) for n in (0, 4096, 4097, 100_000, 1_000_000, 10_000_000, 10**9)] == [
        1, 1, 2, 3, 3, 4, 4]


def test_index_built_in_batches_equals_fingerprints_added_row_by_row() -> None:
    pairs = _hashes({i: f"row {i}" for i in range(3000)})
    batched = segments.SegmentIndex()
    batched.add_many([k for k, _ in pairs[:1000]], [r for _, r in pairs[:1000]])
    batched.add_many([k for k, _ in pairs[1000:]], [r for _, r in pairs[1000:]])
    assert batched.rows == 3000
    for depth in (1, 3, 4):
        expected: dict[str, TableFingerprint] = {}
        for key_hash, row_hash in pairs:
            expected.setdefault(key_hash[:depth], TableFingerprint()).add(row_hash)
        assert batched.level(depth) == expected
    parents = sorted({k[:2] for k, _ in pairs})[:3]
    assert set(batched.level(3, parents)) == {k[:3] for k, _ in pairs if k[:2] in parents}
    with pytest.raises(ValueError):
        batched.add_many(["abc"], ["def"])


def test_drill_can_start_deep_and_needs_one_level_for_small_segments() -> None:
    rng = random.Random(5)
    source = {i: f"value {rng.random()}" for i in range(20_000)}
    target = dict(source)
    target[4242] = "edited"
    left, right = _index(_hashes(source)), _index(_hashes(target))
    found = segments.drill(left.level, right.level, start_depth=3)
    edited = _hashes({4242: "edited"})[0][0]
    assert found.levels == 1 and found.leaves == [edited[:3]]
    assert found.compared_segments == len(left.level(3))
    with pytest.raises(ValueError):
        segments.drill(left.level, right.level, start_depth=5)


def test_compare_keys_sql_parses() -> None:
    from matrix_sync.compare_bigquery import hash_table_select, level_sql, stale_condition

    select, deep = hash_table_select(SCHEMA, TABLE)
    assert deep
    statement = strict(select)
    assert [e.alias_or_name for e in statement.expressions] == [
        "id", "code", "_deep_key_hash", "_deep_row_hash", "_key_hash", "_row_hash"]
    geography = TableSchema(columns=[*SCHEMA.columns, Column(name="g", bq_name="g", source_type="geography",
                                                             bq_type="GEOGRAPHY")], key=["id"])
    select, deep = hash_table_select(geography, TABLE)
    assert not deep and "SHA256" not in select
    strict(select)
    sql, params = level_sql("p.d_staging.compare_things_ab12", 3, None, with_stale=True)
    assert "COUNTIF(" in sql and not params
    strict(sql)
    sql, params = level_sql("p.d_staging.compare_things_ab12", 4, ["abc"])
    strict(sql)
    strict(f"SELECT 1 FROM {TABLE} AS C WHERE {stale_condition('C')}")


def test_strings_are_normalised_only_when_they_may_need_it() -> None:
    text = canonical_text_sql(SCHEMA.columns[1], q("code"))
    assert text.startswith("IF(`code` IS NULL, NULL, IF(REGEXP_CONTAINS(`code`, r'[\\x{300}-")
    assert "NORMALIZE(`code`, NFC), `code`)" in text
    strict(f"SELECT {text} FROM {TABLE}")
    assert "UNNEST" not in float_scientific_sql(q("fee"))  # a CASE, not a correlated subquery per row
