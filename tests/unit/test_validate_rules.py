"""The validator's check list, its profile SQL (parsed with a BigQuery grammar) and its thresholds."""
from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from shared.identifiers import quote_bigquery as q
from shared.manifest import Fingerprint, HashSpec, Manifest, Part, Quarantine, Target
from shared.schema import Column, TableSchema
from shared.validator import checks
from shared.validator.thresholds import CHECKS, COLUMN_CHECKS, Thresholds, ThresholdsError, thresholds_for

SCHEMA = TableSchema(
    columns=[
        Column(name="id", bq_name="id", source_type="int", bq_type="INT64", nullable=False),
        Column(name="copies", bq_name="copies", source_type="smallint", bq_type="INT64", nullable=False),
        Column(name="code", bq_name="code", source_type="nvarchar(10)", bq_type="STRING", length=10),
        Column(name="notes", bq_name="notes", source_type="nvarchar(max)", bq_type="STRING"),
        Column(name="amount", bq_name="amount", source_type="decimal(5,2)", bq_type="NUMERIC", precision=5, scale=2),
        Column(name="at", bq_name="at", source_type="datetime", bq_type="DATETIME"),
        Column(name="slot", bq_name="slot", source_type="smalldatetime", bq_type="DATETIME"),
        Column(name="on", bq_name="on", source_type="date", bq_type="DATE"),
        Column(name="ts", bq_name="ts", source_type="datetimeoffset", bq_type="TIMESTAMP"),
    ],
    key=["id"],
)


def manifest(quarantined: int = 0, *, schema: TableSchema = SCHEMA, dialect: str | None = None) -> Manifest:
    return Manifest.model_validate(dict(
        format_version=1, run_id="20261125T101010000001Z-abcdef", source_table="dbo.Things", source_dialect=dialect,
        target=Target(project="acme-dwh", dataset="matrix", table="things", pubsub_project="acme-dwh"),
        mode="full", sequence=1, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), schema=schema,
        hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[Part(uri="gs://b/snapshots/things/r/part-00000.parquet", rows=3, bytes=1, md5="x")],
        row_count=3, fingerprint=Fingerprint(count=3, xor60=1, sum32=2),
        quarantine=Quarantine(rows=quarantined, uris=["gs://b/q.jsonl"] if quarantined else []),
    ))


def test_profile_query_names_each_check_and_parses() -> None:
    probes = checks._probes(manifest(), Thresholds(date_min=dt.date(1990, 1, 1)))
    names = [p.name for p in probes]
    assert names == ["row_count", "key_unique", "key_not_null", "not_null:copies", "range:id", "range:copies", "max_length:code",
                     "decimal:amount", "range:at", "range:slot", "range:on", "range:ts"]
    expressions = ", ".join(f"{sql} AS {alias}" for p in probes for alias, sql in p.sql.items())
    sqlglot.parse_one(f"SELECT {expressions} FROM {q('acme-dwh', 'matrix', 'things')}", read="bigquery",
                      error_level=ErrorLevel.RAISE)
    sql = {alias: text for p in probes for alias, text in p.sql.items()}
    assert sql["duplicate_keys"].startswith("(SELECT COUNT(*) FROM (SELECT `id` FROM `acme-dwh.matrix.things` GROUP BY")
    assert sql["dec_4"] == "COUNTIF(ABS(`amount`) >= NUMERIC '1000' OR `amount` != TRUNC(`amount`, 2))"
    assert "DATETIME '1990-01-01 00:00:00'" in sql["out_5"]  # the table's date_min is later than 1753
    assert "DATETIME '2079-06-06 23:59:59.999999'" in sql["out_6"]
    assert "TIMESTAMP '1990-01-01 00:00:00+00'" in sql["out_8"]


def _ranges(manifest: Manifest, thresholds: Thresholds | None = None) -> dict[str, str]:
    """Each range probe's name and the bounds it reports."""
    probes = checks._probes(manifest, thresholds or Thresholds())
    return {p.name: p.result(dict.fromkeys(p.sql, 0)).expected for p in probes if p.name.startswith("range:")}


def test_type_ranges_are_the_ones_the_source_enforces() -> None:
    legacy = _ranges(manifest())  # a manifest without source_dialect came from SQL Server
    assert legacy == _ranges(manifest(dialect="mssql"))
    assert legacy["range:at"] == "1753-01-01 .. 9999-12-31" and legacy["range:id"] == f"{-(2**31)} .. {2**31 - 1}"
    # SQLite enforces no declared type: a DATETIME of 1600 or an INT of 2**40 is a value it holds
    assert _ranges(manifest(dialect="sqlite")) == {}
    assert _ranges(manifest(dialect="sqlite"), Thresholds(date_min=dt.date(1990, 1, 1))) == {
        "range:at": "1990-01-01 .. -", "range:slot": "1990-01-01 .. -", "range:on": "1990-01-01 .. -",
        "range:ts": "1990-01-01 .. -"}
    tiny = TableSchema(columns=[
        Column(name="id", bq_name="id", source_type="tinyint", bq_type="INT64", nullable=False),
        Column(name="u", bq_name="u", source_type="tinyint unsigned", bq_type="INT64"),
        Column(name="at", bq_name="at", source_type="datetime(6)", bq_type="DATETIME")], key=["id"])
    assert _ranges(manifest(schema=tiny, dialect="mysql")) == {"range:id": "-128 .. 127", "range:u": "0 .. 255"}
    assert _ranges(manifest(schema=tiny, dialect="mariadb")) == _ranges(manifest(schema=tiny, dialect="mysql"))
    assert _ranges(manifest(schema=tiny, dialect="mssql")) == {"range:id": "0 .. 255", "range:u": "0 .. 255",
                                                               "range:at": "1753-01-01 .. 9999-12-31"}


def test_results_are_typed_and_judged() -> None:
    probes = {p.name: p for p in checks._probes(manifest(), Thresholds(row_count_tolerance=1))}
    assert probes["row_count"].result({"row_count": 4}).passed
    assert not probes["row_count"].result({"row_count": 5}).passed
    failed = probes["max_length:code"].result({"long_2": 3, "longest_2": 14})
    assert (failed.passed, failed.observed, failed.expected) == (False, "3 row(s) longer; longest 14",
                                                                 "at most 10 characters")


def test_quarantine_threshold() -> None:
    assert not checks.quarantine(manifest(2), Thresholds()).passed
    assert checks.quarantine(manifest(2), Thresholds(max_quarantined_rows=2)).passed


def test_skipping_checks_by_name_or_prefix() -> None:
    names = [p.name for p in checks._probes(manifest(), Thresholds(skip=["range:", "key_not_null"]))]
    assert not any(n.startswith("range:") for n in names) and "key_not_null" not in names


def test_thresholds_document() -> None:
    document = '{"default": {"freshness_max_age_s": 60}, "tables": {"things": {"date_min": "2000-01-01"}}}'
    chosen = thresholds_for("acme-dwh.matrix.things", document)
    assert chosen.freshness_max_age_s == 60 and chosen.date_min == dt.date(2000, 1, 1)
    assert thresholds_for("acme-dwh.matrix.other", document).date_min is None
    for bad, message in [("[]", "must be an object"), ('{"default": {"freshness": 1}}', "freshness"),
                         ("{", "is not JSON"), ('{"default": "x"}', "'default' must be an object of settings"),
                         ('{"tables": ["z"]}', "'tables' must be an object of table name -> settings"),
                         ('{"tables": {"z": [1, 2]}}', "'tables.z' must be an object of settings"),
                         ('{"default": {"skip": ["row-count"]}}', "no check is named 'row-count'"),
                         ('{"default": {"skip": ["max_length"]}}', "no check is named 'max_length'"),
                         ('{"default": {"date_min": "2020-01-01", "date_max": "2019-01-01"}}',
                          "date_min 2020-01-01 is after date_max 2019-01-01")]:
        with pytest.raises(ThresholdsError, match=re.escape(message)):
            thresholds_for("x.y.z", bad)
    assert thresholds_for("x.y.z", '{"default": {"skip": ["max_length:", "range:at", "freshness"]}}').skip


def test_every_check_can_be_skipped_by_its_name_and_skipping_all_leaves_no_query() -> None:
    names = [p.name for p in checks._probes(manifest(), Thresholds())]
    everything = Thresholds(skip=[*CHECKS, *(f"{kind}:" for kind in COLUMN_CHECKS)])
    assert all(everything.skipped(name) for name in names)
    assert checks._probes(manifest(), everything) == [] and checks._profile(manifest(), [], None, None) == []
