"""The columnar path of `shared.extractor.prepare` against its per-row reference.

For columns of every BigQuery type, with the model constraints the schema gives them (NOT NULL,
length, precision and scale) and SQLAlchemy's real result processors (SQLite's text dates, float
decimals and int booleans; PostgreSQL numeric as text), hypothesis draws chunks of raw driver values,
good and bad. Whenever the columnar path accepts a chunk, the reference must accept every row of it
(chunk_validator and the converters) and produce the same Arrow table: values, both hashes and the
fingerprint. Whatever the path, the preparer's output equals the reference's, quarantine included.
"""
from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import processors

from shared import exact_processors
from shared.columnar_convert import ColumnConverter, NotColumnar
from shared.extractor.prepare import ChunkPreparer
from shared.models import field_specs
from shared.schema import Column, TableSchema

SETTINGS = settings(deadline=None, max_examples=120)
UTC = dt.timezone.utc
ANY_VALUE = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=8), st.booleans(), st.binary(max_size=8),
                      st.decimals(places=3, allow_nan=True), st.dates(), st.datetimes(), st.times(), st.uuids())


def _schema(column: Column) -> TableSchema:
    key = Column(name="id", bq_name="id", source_type="bigint", bq_type="INT64", nullable=False)
    return TableSchema(columns=[key, column], key=["id"])


def _column(bq_type: str, nullable: bool = True, source_type: str = "x", **parameters: int | None) -> Column:
    return Column(name="c", bq_name="c", source_type=source_type, bq_type=bq_type, nullable=nullable, **parameters)


def _decimals(places: int, digits: int) -> st.SearchStrategy[Decimal]:
    def spelled(scale: int) -> st.SearchStrategy[Decimal]:
        bound = 10 ** (digits + scale) - 1
        return st.integers(min_value=-bound, max_value=bound).map(
            lambda u: Decimal(u).scaleb(-scale, decimal.Context(prec=100)))

    return st.integers(min_value=0, max_value=places).flatmap(spelled) | st.sampled_from(
        [Decimal("NaN"), Decimal("-0.00"), Decimal("1.2300"), Decimal("1E+2"), Decimal("Infinity")])


def _texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size) | st.sampled_from(["a\udc80", "e\u0301", "😀😀😀", "     ", ""])


# (column, processor, values of the column the driver could return)
CASES: dict[str, tuple[Column, Any, st.SearchStrategy[object]]] = {
    "int64": (_column("INT64"), None, st.integers(min_value=-(2**64), max_value=2**64) | st.booleans()),
    "int64 not null": (_column("INT64", nullable=False), None, st.integers()),
    "float64": (_column("FLOAT64"), None, st.floats() | st.integers(max_value=2**60)),
    "float64 to_float": (_column("FLOAT64"), processors.to_float, st.floats() | st.decimals(allow_nan=False, places=2)),
    "bool": (_column("BOOL"), None, st.booleans() | st.integers(min_value=-1, max_value=2)),
    "bool sqlite": (_column("BOOL", nullable=False), exact_processors.zero_or_one,
                    st.integers(min_value=-2, max_value=3) | st.sampled_from(["false", b"\x00", 0.0])),
    "numeric(5,2)": (_column("NUMERIC", precision=5, scale=2), None, _decimals(4, 5) | st.floats(width=32)),
    "numeric bare": (_column("NUMERIC"), None, _decimals(12, 32)),
    "numeric(2,4)": (_column("NUMERIC", precision=2, scale=4), None, _decimals(5, 1)),
    "bignumeric(40,20)": (_column("BIGNUMERIC", precision=40, scale=20), None, _decimals(24, 24)),
    "numeric sqlite": (_column("NUMERIC", precision=8, scale=2), processors.to_decimal_processor_factory(Decimal, 2),
                       st.floats(min_value=-1e7, max_value=1e7) | st.integers(min_value=-10**8, max_value=10**8)
                       | st.sampled_from([0.125, 0.005, 2.675, -0.005, 1e6 + 0.5, float("nan"), float("inf")])),
    "numeric sqlite exact": (_column("NUMERIC", precision=20, scale=2),
                             exact_processors.exact(processors.to_decimal_processor_factory(Decimal, 2)),
                             st.integers(min_value=-10**18, max_value=10**18) | st.floats(min_value=-1e7, max_value=1e7)
                             | st.sampled_from([2**53 + 1, -(2**53) - 1, 0.125])),
    "numeric postgresql": (_column("NUMERIC", precision=10, scale=4), Decimal,
                           _decimals(6, 8).map(str) | st.sampled_from(["NaN", "Infinity", "1e3", "-0.0000"])),
    "string(5)": (_column("STRING", length=5), None, _texts(7) | st.integers() | st.uuids()),
    "string not null": (_column("STRING", nullable=False), None, _texts(30)),
    "string uuid": (_column("STRING", source_type="uuid"), None, st.uuids() | st.text(max_size=4)),
    "bytes(4)": (_column("BYTES", length=4), None, st.binary(max_size=6) | st.text(max_size=2)),
    "date": (_column("DATE"), None, st.dates() | st.datetimes()),
    "date sqlite": (_column("DATE"), processors.str_to_date,
                    st.dates().map(dt.date.isoformat)
                    | st.sampled_from(["2023-02-30", "0000-01-01", "20240101", "2024-1-05", " 2024-01-05", "x"])),
    "datetime": (_column("DATETIME"), None, st.datetimes() | st.datetimes(timezones=st.just(UTC)) | st.dates()),
    "datetime sqlite": (_column("DATETIME", nullable=False), processors.str_to_datetime,
                        st.datetimes().map(lambda d: d.isoformat(sep=" "))
                        | st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds"))
                        | st.sampled_from(["2024-01-01 24:00:00", "0000-12-31 23:59:59.999999", "2024-01-01 12:00:00.5",
                                           "2024-01-01 12:00:00+01:00", "2024-01-01 12:00:00.1234567"])),
    "timestamp": (_column("TIMESTAMP"), None,
                  st.datetimes() | st.datetimes(timezones=st.sampled_from(
                      [UTC, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12, minutes=-30))]))),
    "time": (_column("TIME"), None, st.times() | st.times(timezones=st.just(UTC))),
    "time sqlite": (_column("TIME"), processors.str_to_time, st.times().map(dt.time.isoformat) | st.just("25:00")),
    "json": (_column("JSON"), None, ANY_VALUE),
    "geography": (_column("GEOGRAPHY"), None, _texts(10) | st.integers()),
}


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN and -0.0 unequal to 0.0 (repr of each value)."""
    return a.schema.equals(b.schema) and all(
        [repr(v) for v in a.column(i).to_pylist()] == [repr(v) for v in b.column(i).to_pylist()]
        for i in range(a.num_columns))


def _chunks(values: st.SearchStrategy[object]) -> st.SearchStrategy[list[object]]:
    return st.lists(values, min_size=1, max_size=12) | st.lists(st.none() | values, min_size=1, max_size=12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_columnar_path_agrees_with_the_per_row_reference(case: str) -> None:
    column, processor, values = CASES[case]
    preparer = ChunkPreparer(_schema(column))
    processors_ = (None, processor)

    @SETTINGS
    @given(_chunks(values))
    def check(column_values: list[object]) -> None:
        raw = [(i, v) for i, v in enumerate(column_values)]
        reference, rejected = preparer._by_row(raw, processors_)
        try:
            columnar = preparer._by_column(raw, processors_)
        except NotColumnar:
            columnar = None
        if columnar is not None:
            assert rejected == []
            assert _same(columnar.table, reference.table)
            assert columnar.fingerprint == reference.fingerprint
        prepared, quarantined = preparer.prepare_raw(raw, processors_)
        assert _same(prepared.table, reference.table) and quarantined == rejected

    check()


# Chunks the columnar path must take (so the differential test above is not vacuous).
CLEAN: list[tuple[Column, Any, list[object]]] = [
    (_column("INT64"), None, [1, None, -(2**63), 2**63 - 1]),
    (_column("FLOAT64"), None, [1.5, None, float("nan"), -0.0]),
    (_column("BOOL"), exact_processors.zero_or_one, [0, 1, None]),
    (_column("NUMERIC", precision=12, scale=2), processors.to_decimal_processor_factory(Decimal, 2),
     [5353.49, 12, None, 0.125, -0.001]),
    (_column("NUMERIC", precision=12, scale=2), Decimal, ["5353.49", "-0.00", None]),
    (_column("NUMERIC", precision=12, scale=2), None, [Decimal("5353.49"), Decimal("1.20"), None]),
    (_column("BIGNUMERIC", precision=76, scale=38), None, [Decimal("1E-38"), Decimal("-12345678901234567890.5")]),
    (_column("STRING", length=3), None, ["abc", "é", None, "😀"]),
    (_column("STRING", source_type="uniqueidentifier"), None, [uuid.UUID(int=5), None]),
    (_column("BYTES", length=4), None, [b"\x00\xff", b"", None]),
    (_column("DATE"), processors.str_to_date, ["2024-02-29", "0001-01-01", "9999-12-31", None]),
    (_column("DATE"), None, [dt.date(1, 1, 1), None]),
    (_column("DATETIME"), processors.str_to_datetime, ["2024-02-29 23:59:59.123456", "2024-01-01T00:00:00", None]),
    (_column("DATETIME"), None, [dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None]),
    (_column("TIMESTAMP"), None, [dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                                  dt.datetime(2024, 1, 1), None]),
    (_column("TIME"), None, [dt.time(23, 59, 59, 999999), None]),
    (_column("JSON"), None, ['{"a": 1}', None]),
]


@pytest.mark.parametrize("column, processor, values", CLEAN)
def test_clean_chunks_take_the_columnar_path(column: Column, processor: Callable[..., object] | None,
                                             values: list[object]) -> None:
    preparer = ChunkPreparer(_schema(column))
    raw = [(i, v) for i, v in enumerate(values)]
    columnar = preparer._by_column(raw, (None, processor))
    reference, rejected = preparer._by_row(raw, (None, processor))
    assert rejected == [] and _same(columnar.table, reference.table)


@pytest.mark.parametrize("values, reason", [
    ([Decimal("123456.7")], "integer digits"),
    ([Decimal("1.234")], "decimal places"),
    ([None], "NULL in a NOT NULL column"),
    (["x"], "values of type"),
])
def test_the_columnar_path_says_why_it_declines(values: list[object], reason: str) -> None:
    spec = field_specs(_schema(_column("NUMERIC", nullable=False, precision=5, scale=2)))[1]
    with pytest.raises(NotColumnar, match=reason):
        ColumnConverter(spec)(values)
