"""Deep mode's premise on the BigQuery emulator: the hashes rebuilt from the data in SQL equal the
ones the extractor computed in Python, for every row of the sample tables and for the hard values
of every type (NFD strings and every kind of NFC change, trailing spaces, NUMERIC scale, year 1,
microseconds, every power of two, random doubles)."""
from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import random
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import gcs
from shared.applied import latest_snapshot
from shared.bq_hash_sql import deep_hash_query
from shared.hashing import RowHasher
from shared.identifiers import quote_bigquery as q
from shared.schema import Column, TableSchema
from shared.types import arrow_type
from tests.support import write_config

pytestmark = [pytest.mark.stack]


def test_rebuilt_hashes_equal_the_stored_ones_for_every_sample_row(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "small", seed=5)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables=sample.TABLE_KEYS,
                          suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    reports = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert all(r.load_status == "applied" for r in reports), reports
    project, dataset = config.bigquery.project, config.bigquery.dataset
    for table in config.tables:
        table_id = f"{project}.{dataset}.{table.target_table}"
        manifest = latest_snapshot(project, dataset, table_id).manifest  # type: ignore[union-attr]
        rebuilt = deep_hash_query(manifest.table_schema, q(project, dataset, table.target_table))
        row = bq.query(project, f"SELECT COUNT(*) AS n, COUNTIF(_key_hash != _deep_key_hash) AS keys, "
                                f"COUNTIF(_row_hash != _deep_row_hash) AS row_hashes FROM ({rebuilt})")[0]
        assert (row["n"], row["keys"], row["row_hashes"]) == (manifest.row_count, 0, 0), table.name


def _doubles() -> list[float]:
    rng = random.Random(9)
    values = [0.0, -0.0, 1.0, -2.0, 0.1, 0.5, 1e15, 1e16, 1e16 + 2, 123456789012345.6, 1e-4, 1e-5, 1.5e-7,
              5e-324, 1.7976931348623157e308, 0.30000000000000004, 1 / 3, 1e22, 1e23, 9007199254740993.0,
              math.nan, math.inf, -math.inf]
    values += [2.0**e for e in range(-1074, 1024)] + [-(2.0**e) for e in range(-1074, 1024, 7)]
    values += [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(6000)]
    values += [round(rng.uniform(-1000, 1000), rng.randint(0, 6)) for _ in range(2000)]
    # subnormals of few digits: their 15-digit rendering reads back too, but is not their shortest
    values += [float(f"{rng.randint(1, 10 ** rng.randint(1, 15))}e-{rng.randint(309, 323)}") for _ in range(500)]
    return values


def _hard_rows() -> list[tuple[object, ...]]:
    utc = dt.UTC
    strings = ["", " ", "MX-1", "MX-1 ", "mx-1", "e\u0301", "\u00e9", "Zoë 🌻", "山田", "a:b~", "~", None,
               # NFC at work only where `shared.nfc_ranges` sends the string through NORMALIZE: jamo
               # composing, a CJK compatibility ideograph, Kelvin sign, marks reordered, Greek oxia;
               # and characters just outside the ranges, which are left alone
               "\u1100\u1161\u11a8", "\uf900", "\u212a", "q\u0301\u0323", "A\u030a", "\u1f71", "\u0388",
               "\u02ff", "👩\u200d💻", "Ναυσικά\u0345"]
    numerics = [decimal.Decimal(v) for v in ("0", "100", "1.5", "1.50", "-0.000000001", "12345678901234567890.123456789",
                                             "-99999999999999999999999999999.999999999", "10")] + [None]
    dates = [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29), None]
    datetimes = [dt.datetime(1, 1, 1), dt.datetime(2024, 1, 2, 3, 4, 5), dt.datetime(2024, 1, 2, 3, 4, 5, 60),
                 dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None]
    stamps = [dt.datetime(1970, 1, 1, tzinfo=utc), dt.datetime(2024, 6, 30, 23, 59, 59, 5, tzinfo=utc),
              dt.datetime(999, 3, 4, 5, 6, 7, tzinfo=utc), None]
    times = [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 0, 0, 10), None]
    raw = [b"", b"\x00\xff", bytes(range(16)), None]
    doubles = _doubles()
    rows = []
    for i, value in enumerate(doubles):
        rows.append((i, strings[i % len(strings)], numerics[i % len(numerics)], value, dates[i % len(dates)],
                     datetimes[i % len(datetimes)], stamps[i % len(stamps)], times[i % len(times)],
                     [True, False, None][i % 3], raw[i % len(raw)]))
    return rows


HARD_SCHEMA = TableSchema(columns=[
    Column(name="id", bq_name="id", source_type="bigint", bq_type="INT64", nullable=False),
    Column(name="text", bq_name="text", source_type="nvarchar", bq_type="STRING"),
    Column(name="amount", bq_name="amount", source_type="decimal(38,9)", bq_type="NUMERIC"),
    Column(name="value", bq_name="value", source_type="float", bq_type="FLOAT64"),
    Column(name="day", bq_name="day", source_type="date", bq_type="DATE"),
    Column(name="at", bq_name="at", source_type="datetime2", bq_type="DATETIME"),
    Column(name="ts", bq_name="ts", source_type="datetimeoffset", bq_type="TIMESTAMP"),
    Column(name="t", bq_name="t", source_type="time", bq_type="TIME"),
    Column(name="flag", bq_name="flag", source_type="bit", bq_type="BOOL"),
    Column(name="raw", bq_name="raw", source_type="varbinary", bq_type="BYTES"),
], key=["id", "text"])


def _rebuilt_in_bigquery(stack: LocalStack, unique_name: str, schema: TableSchema,
                         rows: list[tuple[object, ...]]) -> dict[object, tuple[str, str]]:
    """`rows` loaded into a BigQuery table of `schema`, and both hashes rebuilt from them in SQL, by id."""
    project, dataset, bucket = f"proj-{unique_name}", f"ds_{unique_name}", f"bucket-{unique_name}"
    stack.ensure_resources(bucket=bucket, bigquery_project=project, dataset=dataset, pubsub_project=project)
    columns = list(zip(*rows, strict=True))
    arrow_schema = pa.schema([pa.field(c.bq_name, arrow_type(c.bq_type)) for c in schema.columns])
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays([pa.array(v, type=f.type) for v, f in zip(columns, arrow_schema, strict=True)],
                                        schema=arrow_schema), buffer)
    uri = gcs.upload(bucket, "hard/values.parquet", buffer.getvalue(), "application/vnd.apache.parquet").uri
    table_id = f"{project}.{dataset}.hard"
    fields = bq.table_fields(schema)[: len(schema.columns)]
    bq.create_table(table_id, fields)
    bq.client(project).load_table_from_uri([uri], table_id, job_config=bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, schema=fields)).result()
    # the deep query needs the hash columns; the stored ones are irrelevant here
    select = deep_hash_query(schema, f"(SELECT *, '' AS _key_hash, '' AS _row_hash FROM {q(*table_id.split('.'))})")
    return {r["id"]: (r["_deep_key_hash"], r["_deep_row_hash"]) for r in bq.query(project, select)}


def test_hard_values_of_every_type_hash_the_same_in_sql_and_python(stack: LocalStack, unique_name: str) -> None:
    rows = _hard_rows()
    rebuilt = _rebuilt_in_bigquery(stack, unique_name, HARD_SCHEMA, rows)
    hasher = RowHasher(HARD_SCHEMA.key_positions)
    wrong = [(row, rebuilt.get(row[0])) for row in rows if hasher(row) != rebuilt.get(row[0])]
    assert len(rebuilt) == len(rows)
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:3]}"


def test_a_table_hundreds_of_columns_wide_is_rebuilt_too(stack: LocalStack, unique_name: str) -> None:
    """260 columns, every type many times over: one flat CONCAT of their frames used to nest them
    260 deep once folded into `||`, which the emulator's SQL translator could not take."""
    value_columns = HARD_SCHEMA.columns[1:]
    repeats = 29
    columns = [HARD_SCHEMA.columns[0]] + [
        c.model_copy(update={"name": f"{c.name}_{n}", "bq_name": f"{c.bq_name}_{n}"})
        for n in range(repeats) for c in value_columns]
    schema = TableSchema(columns=columns, key=["id", "text_0"])
    rows = [(row[0], *(row[1:] * repeats)) for row in _hard_rows()[::40]]
    rebuilt = _rebuilt_in_bigquery(stack, unique_name, schema, rows)
    hasher = RowHasher(schema.key_positions)
    assert len(columns) == 262 and len(rebuilt) == len(rows)
    assert [row[0] for row in rows if hasher(row) != rebuilt.get(row[0])] == []
