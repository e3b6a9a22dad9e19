"""`shared.columnar_hash` against the reference `shared.hashing.RowHasher`, byte for byte.

Values are drawn as the per-row path stores them (what `shared.types.arrow_value_converter`
returns for each BigQuery type), put in the Arrow array of that type, hashed column-wise, and
compared with RowHasher over the same Python values: key hash, row hash and fingerprint.
"""
from __future__ import annotations

import datetime as dt
import decimal
import unicodedata
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import columnar_hash
from shared.columnar_hash import ColumnarHashError, canonical_texts, hash_columns
from shared.hashing import RowHasher, TableFingerprint, canonical_text
from shared.types import arrow_type, arrow_value_converter

SETTINGS = settings(deadline=None, max_examples=150)
UTC = dt.timezone.utc
EXACT = decimal.Context(prec=100)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT64_EDGES = st.sampled_from([-(2**63), 2**63 - 1, 0, -1, 1])
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, 1e16, 1e-5, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0, 1e15, 123456.0,
     0.1, 1e21, 1e-7, float("nan"), float("inf"), -float("inf")])
NFC_NEEDY = st.sampled_from(["e\u0301", "A\u030a", "\u1e9b\u0323", "Å", "ﬁ", "\u0344", "한", "\u1100\u1161"])
TEXTS = (st.text() | NFC_NEEDY | st.sampled_from(["", " ", "a  ", "~", "3:abc", "😀𝔘", "\x00"])).filter(
    lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t))


def _numeric(integer_digits: int, scale: int) -> st.SearchStrategy[Decimal]:
    """Decimals that fit (integer_digits, scale), including both ends and negative zero."""
    def spelled_with(places: int) -> st.SearchStrategy[Decimal]:
        bound = 10 ** (integer_digits + places) - 1
        units = st.integers(min_value=-bound, max_value=bound) | st.sampled_from([bound, -bound])
        return units.map(lambda u: Decimal(u).scaleb(-places, EXACT))

    spelled = st.integers(min_value=0, max_value=scale).flatmap(spelled_with)
    edges = st.sampled_from([Decimal("-0"), Decimal("-0.000"), Decimal("0E-9"), Decimal("1E-9"),
                             Decimal("-1E-7"), Decimal("0.0000005"), Decimal("1.50"), Decimal("1E+3")])
    return spelled | edges.filter(lambda d: d.as_tuple().exponent >= -scale)


DATES = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
NAIVE = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
NAIVE_WHOLE_SECONDS = NAIVE.map(lambda d: d.replace(microsecond=0))
BY_TYPE: dict[str, st.SearchStrategy[object]] = {
    "INT64": INT64 | INT64_EDGES,
    "FLOAT64": FLOATS,
    "BOOL": st.booleans(),
    "NUMERIC": _numeric(29, 9),
    "BIGNUMERIC": _numeric(38, 38),
    "STRING": TEXTS,
    "GEOGRAPHY": TEXTS,
    "JSON": TEXTS,
    "BYTES": st.binary(max_size=40),
    "DATE": DATES,
    "DATETIME": NAIVE | NAIVE_WHOLE_SECONDS,
    "TIMESTAMP": (NAIVE | NAIVE_WHOLE_SECONDS).map(lambda d: d.replace(tzinfo=UTC)),
    "TIME": st.times() | st.times().map(lambda t: t.replace(microsecond=0)),
}


def _stored(bq_type: str, values: list[object]) -> list[object]:
    convert = arrow_value_converter(bq_type)
    return [convert(v) for v in values]


def _reference(rows: list[tuple], key_positions: list[int]) -> tuple[list[str], list[str], TableFingerprint]:
    hasher = RowHasher(key_positions)
    hashes = [hasher(row) for row in rows]
    fingerprint = TableFingerprint()
    for _, row_hash in hashes:
        fingerprint.add(row_hash)
    return [k for k, _ in hashes], [r for _, r in hashes], fingerprint


def _columnar(columns: list[list[object]], types: list[str], key_positions: list[int]):  # type: ignore[no-untyped-def]
    arrays = [pa.array(values, arrow_type(t)) for values, t in zip(columns, types, strict=True)]
    key_hashes, row_hashes, fingerprint = hash_columns(arrays, key_positions)
    return key_hashes.to_pylist(), row_hashes.to_pylist(), fingerprint


@pytest.mark.parametrize("bq_type", sorted(BY_TYPE))
def test_every_type_hashes_as_the_row_hasher_does(bq_type: str) -> None:
    @SETTINGS
    @given(st.lists(st.none() | BY_TYPE[bq_type], min_size=1, max_size=30))
    def check(values: list[object]) -> None:
        stored = _stored(bq_type, values)
        texts = canonical_texts(pa.array(stored, arrow_type(bq_type))).to_pylist()
        assert texts == [canonical_text(v) for v in stored]
        ids = list(range(len(stored)))
        rows = list(zip(ids, stored, strict=True))
        assert _columnar([ids, stored], ["INT64", bq_type], [1, 0]) == _reference(rows, [1, 0])

    check()


ROW_TYPES = sorted(BY_TYPE)


@SETTINGS
@given(st.data(), st.lists(st.sampled_from(ROW_TYPES), min_size=1, max_size=6))
def test_rows_of_mixed_types_and_composite_keys(data: st.DataObject, types: list[str]) -> None:
    n = data.draw(st.integers(min_value=1, max_value=12))
    columns = [_stored(t, data.draw(st.lists(st.none() | BY_TYPE[t], min_size=n, max_size=n))) for t in types]
    key = data.draw(st.lists(st.integers(min_value=0, max_value=len(types) - 1), min_size=1, max_size=3, unique=True))
    rows = list(zip(*columns, strict=True))
    assert _columnar(columns, types, key) == _reference(rows, key)


def test_the_key_hash_of_all_columns_is_the_row_hash() -> None:
    columns = [[1, 2, None], ["a", None, "é"]]
    key_hashes, row_hashes, _ = _columnar(columns, ["INT64", "STRING"], [0, 1])
    assert key_hashes == row_hashes == _reference(list(zip(*columns, strict=True)), [0, 1])[1]


def test_texts_longer_than_the_prefix_table_and_nulls_around_them() -> None:
    """Frame prefixes come from a table of ``<n>:`` up to 4095 code points; longer texts spell theirs."""
    texts = ["x" * 4095, None, "é" * 4096, "", "𝄞" * 5000, None]
    days = [dt.date(2024, 2, 29), None, dt.date(1, 1, 1), dt.date(9999, 12, 31), None, dt.date(1970, 1, 1)]
    ids = list(range(len(texts)))
    columns = [ids, texts, days]
    assert _columnar(columns, ["INT64", "STRING", "DATE"], [0]) == _reference(list(zip(*columns, strict=True)), [0])
    assert _columnar([ids, texts], ["INT64", "STRING"], [1]) == _reference(list(zip(ids, texts, strict=True)), [1])


def test_values_needing_their_own_rendering_are_exact() -> None:
    """The cases Arrow's own text gets wrong: tiny decimals (exponent), floats (repr), NFC."""
    decimals = [Decimal("1E-9"), Decimal("-0.000000100"), Decimal("0"), Decimal("12.500000000"), None]
    floats = [1e-5, 1e16, -0.0, 2.0, float("nan"), None]
    texts = ["e\u0301", "é", "plain", None, "ﬁ"]
    for values, bq_type in ((decimals, "NUMERIC"), (floats, "FLOAT64"), (texts, "STRING")):
        stored = _stored(bq_type, values)
        assert canonical_texts(pa.array(stored, arrow_type(bq_type))).to_pylist() == [canonical_text(v) for v in stored]
    assert unicodedata.normalize("NFC", "e\u0301") == canonical_texts(pa.array(["e\u0301"]))[0].as_py()


def test_sliced_and_chunked_inputs_hash_like_whole_ones() -> None:
    values = [b"\x00\xff", None, b"", b"abc", None, b"\x10"]
    whole = pa.array(values, pa.binary())
    assert canonical_texts(whole.slice(1, 4)).to_pylist() == [canonical_text(v) for v in values[1:5]]


def test_an_arrow_type_without_a_canonical_text_is_refused() -> None:
    with pytest.raises(ColumnarHashError, match="duration"):
        canonical_texts(pa.array([dt.timedelta(seconds=1)]))


def test_nfc_matches_python_for_every_code_point_alone_and_in_context() -> None:
    """Exhaustive over the first two planes (plus a sample above): each code point alone, after a
    base letter, before a combining mark and after a Hangul leading consonant, the contexts in which
    NFC composes or reorders."""
    codes = [c for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF] + list(range(0x20000, 0x110000, 97))
    for context in ("{}", "e{}", "{}\u0301", "\u1100{}", "{}\u0323\u0307"):
        texts = [context.format(chr(c)) for c in codes]
        expected = [unicodedata.normalize("NFC", t) for t in texts]
        assert canonical_texts(pa.array(texts, pa.string())).to_pylist() == expected


def test_floats_of_random_bit_patterns_render_like_repr() -> None:
    """Arrow's shortest digits are taken only where they equal repr()'s; a sample of every kind of
    double (random bit patterns: subnormals, huge, tiny, NaN payloads) and of plain decimals."""
    rng = np.random.default_rng(20261125)
    doubles = np.concatenate([rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64).view(np.float64),
                              np.round(rng.uniform(-1e6, 1e6, 100_000), 3), rng.uniform(1e15, 1e16, 50_000)])
    values = doubles.tolist()
    assert canonical_texts(pa.array(values, pa.float64())).to_pylist() == [canonical_text(v) for v in values]


def test_a_chunk_hashed_in_slices_equals_the_row_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 4 rows over 30: the values rendered in Python (tiny decimals, floats, NFC) and the
    NULLs fall in different slices, and the fingerprint sums across them."""
    monkeypatch.setattr(columnar_hash, "_SLICE_ROWS", 4)
    n = 30
    ids = list(range(n))
    texts = [None if i % 7 == 0 else ("e\u0301" if i % 5 == 0 else f"t{i}") for i in range(n)]
    amounts = _stored("NUMERIC", [Decimal("1E-9") if i % 6 == 1 else (None if i % 4 == 0 else Decimal(i) / 8)
                                  for i in range(n)])
    ratios = [float("nan") if i == 13 else i / 3 for i in range(n)]
    columns = [ids, texts, amounts, ratios]
    types = ["INT64", "STRING", "NUMERIC", "FLOAT64"]
    for key in ([0], [1, 0], [0, 1, 2, 3]):
        assert _columnar(columns, types, key) == _reference(list(zip(*columns, strict=True)), key)
