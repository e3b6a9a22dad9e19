"""The canonical encoding, row hashes and table fingerprint of `shared.hashing`.

Hashes decide what the loader rewrites and what the reconciler calls equal, so both directions are
tested: values equal in the source hash equal whatever Python shape they arrive in, and values
that differ hash differently. The golden hashes freeze the encoding: if one of them fails, the
encoding changed and every loaded row would be rewritten; bump ENCODING_VERSION instead.
"""
from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import unicodedata
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlglot
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.hashing import (
    ENCODING_VERSION,
    HASH_ALGORITHM,
    HashingError,
    RowHasher,
    TableFingerprint,
    canonical_text,
    digest,
    encode_row,
    fingerprint_sql,
)

SETTINGS = settings(deadline=None, max_examples=100)
UTC = dt.timezone.utc
# Datetimes away from the ends of the range, so every fixed offset can be applied.
SAFE_DATETIMES = st.datetimes(min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31))
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
FINITE_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)


def _hash_of(values: list[object]) -> str:
    return hashlib.sha256(encode_row(values)).hexdigest()[:32]


# --- golden rows: compute once, frozen here ----------------------------------------------------

MIXED_ROW = [
    1, "Matrix", Decimal("12.30"), 1.5, True, None, b"\x00\xff",
    uuid.UUID("12345678-1234-5678-1234-567812345678"), dt.date(2024, 2, 29),
    dt.datetime(2024, 2, 29, 13, 45, 0, 1), dt.time(23, 59, 59, 999999),
]

GOLDEN = [
    ([], b"", "e3b0c44298fc1c149afbf4c8996fb924"),
    ([None], b"~", "7ace431cb61584cb9b8dc7ec08cf38ac"),
    (
        MIXED_ROW,
        b"1:16:Matrix4:12.33:1.54:true~4:00ff36:12345678-1234-5678-1234-567812345678"
        b"10:2024-02-2926:2024-02-29T13:45:00.00000115:23:59:59.999999",
        "366fdd5bb4ab2847158479f8503a23b0",
    ),
    (
        [dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))],
        b"27:2024-01-01T10:00:00.000000Z",
        "c3302bd00d27b5ded8e1b1a2733e6789",
    ),
    (["Zürich ", "", "日本"], "7:Zürich 0:2:日本".encode(), "fe7529e0ec305e0a5f2294e5a47dfbd6"),
]


def test_version_and_algorithm_are_declared() -> None:
    assert (ENCODING_VERSION, HASH_ALGORITHM) == (1, "sha256-128")


@pytest.mark.parametrize(("row", "encoded", "expected"), GOLDEN)
def test_golden_rows(row: list[object], encoded: bytes, expected: str) -> None:
    assert encode_row(row) == encoded
    assert digest(row) == expected
    assert len(expected) == 32


def test_golden_row_hasher() -> None:
    assert RowHasher([1, 0])(MIXED_ROW) == (
        "289b1a72578bf0644514515cc165883e",
        "366fdd5bb4ab2847158479f8503a23b0",
    )


# --- canonical text of single values ------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (10**30, "1" + "0" * 30),
        (Decimal("1.50"), "1.5"),
        (Decimal("1.500000000"), "1.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.00"), "0"),
        (Decimal("0.000100"), "0.0001"),
        (Decimal("-12.340"), "-12.34"),
        (Decimal("100"), "100"),
        (0.0, "0"),
        (-0.0, "0"),
        (2.0, "2"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e15, "1000000000000000"),
        (1e16, "1e+16"),
        (1e-05, "1e-05"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ("", ""),
        ("a  ", "a  "),
        (b"\x00\xab", "00ab"),
        (bytearray(b"\xff"), "ff"),
        (memoryview(b"\x10"), "10"),
        (uuid.UUID("ABCDEF00-0000-0000-0000-0000000000FF"), "abcdef00-0000-0000-0000-0000000000ff"),
        (dt.date(1, 1, 1), "0001-01-01"),
        (dt.datetime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09.000000"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 10), "2024-05-06T07:08:09.000010"),
        (dt.datetime(2024, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), "2023-12-31T23:30:00.000000Z"),
        (dt.time(0, 0), "00:00:00.000000"),
        (dt.time(1, 2, 3, 4), "01:02:03.000004"),
    ],
)
def test_canonical_text(value: object, text: str | None) -> None:
    assert canonical_text(value) == text


def test_canonical_text_of_a_datetime_is_not_that_of_a_date() -> None:
    assert canonical_text(dt.datetime(2024, 1, 1)) != canonical_text(dt.date(2024, 1, 1))


def test_subclasses_encode_as_their_base() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Colour(enum.StrEnum):
        RED = "red"

    class Stamp(dt.datetime):
        pass

    assert canonical_text(Level.HIGH) == "3"
    assert canonical_text(Colour.RED) == "red"
    assert canonical_text(Stamp(2024, 1, 1)) == "2024-01-01T00:00:00.000000"


@pytest.mark.parametrize(
    "value",
    [object(), [1], {"a": 1}, (1,), dt.timedelta(seconds=1), 1j, {1}],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_types_are_refused_by_name(value: object) -> None:
    with pytest.raises(HashingError, match=type(value).__qualname__):
        canonical_text(value)
    with pytest.raises(TypeError):
        digest([value])


@pytest.mark.parametrize(
    "value",
    [
        Decimal("NaN"),
        Decimal("-Infinity"),
        dt.time(1, 2, tzinfo=UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    ],
    ids=repr,
)
def test_values_without_a_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(HashingError):
        canonical_text(value)


def test_unpaired_surrogate_is_refused() -> None:
    with pytest.raises(HashingError, match="surrogate"):
        RowHasher([0])(["a\udc80"])


# --- equal in the source, equal hash ------------------------------------------------------------

@SETTINGS
@given(FINITE_DECIMALS, st.integers(min_value=0, max_value=30))
def test_decimal_scale_does_not_matter(value: Decimal, extra_zeros: int) -> None:
    sign, digits, exponent = value.as_tuple()
    assume(isinstance(exponent, int))
    padded = Decimal((sign, digits + (0,) * extra_zeros, exponent - extra_zeros))
    assert padded == value
    assert digest([padded]) == digest([value])


@SETTINGS
@given(FINITE_DECIMALS)
def test_decimal_text_is_plain_exact_and_context_free(value: Decimal) -> None:
    text = canonical_text(value)
    assert text is not None and "E" not in text.upper()
    assert Decimal(text) == value
    with decimal.localcontext(decimal.Context(prec=3)):
        assert canonical_text(value) == text


@SETTINGS
@given(st.floats())
def test_float_text_round_trips(value: float) -> None:
    parsed = float(canonical_text(value))  # type: ignore[arg-type]
    assert parsed == value or (parsed != parsed and value != value)


@SETTINGS
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_integral_float_hashes_like_int(value: int) -> None:
    assert digest([float(value)]) == digest([value]) == digest([Decimal(value)])


def test_negative_zero_hashes_like_zero() -> None:
    assert digest([-0.0]) == digest([0.0]) == digest([0]) == digest([Decimal("-0.000")])


@SETTINGS
@given(st.text())
def test_nfc_and_nfd_hash_equal(value: str) -> None:
    nfd = unicodedata.normalize("NFD", value)
    nfc = unicodedata.normalize("NFC", value)
    assert digest([nfd]) == digest([nfc]) == digest([value])


@SETTINGS
@given(SAFE_DATETIMES, OFFSETS, OFFSETS)
def test_same_instant_in_different_zones_hashes_equal(
    wall: dt.datetime, zone: dt.timezone, other: dt.timezone
) -> None:
    instant = wall.replace(tzinfo=UTC)
    in_zone, in_other = instant.astimezone(zone), instant.astimezone(other)
    assert digest([in_zone]) == digest([in_other]) == digest([instant])
    assert canonical_text(in_zone) == canonical_text(wall) + "Z"


def test_same_instant_in_a_named_zone_hashes_equal() -> None:
    instant = dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # the night Berlin leaves summer time
    berlin = instant.astimezone(ZoneInfo("Europe/Berlin"))
    assert digest([berlin]) == digest([instant])


@SETTINGS
@given(st.binary())
def test_bytes_like_values_hash_equal(value: bytes) -> None:
    assert digest([value]) == digest([bytearray(value)]) == digest([memoryview(value)])


@SETTINGS
@given(st.uuids())
def test_uuid_representations_hash_equal(value: uuid.UUID) -> None:
    forms = [uuid.UUID(str(value).upper()), uuid.UUID(bytes=value.bytes), uuid.UUID(int=value.int)]
    assert {digest([form]) for form in forms} == {digest([value])}
    assert digest([value]) == digest([str(value)])  # the STRING column holds str(uuid)


# --- different in the source, different hash ----------------------------------------------------

@pytest.mark.parametrize(
    ("left", "right"),
    [
        ([None], [""]),
        (["a "], ["a"]),
        ([1], [1.5]),
        ([True], [False]),
        ([None], []),
        ([""], []),
        (["a", "b"], ["ab", None]),
        (["a", "b"], ["ab"]),
        (["a", "b"], ["a", "b", None]),
        (["ab", ""], ["a", "b"]),
        (["1:a"], ["a"]),
        (["~"], [None]),
        ([1, 2], [2, 1]),
        ([None, "x"], ["x", None]),
        ([dt.datetime(2024, 1, 1)], [dt.datetime(2024, 1, 1, tzinfo=UTC)]),
        ([dt.datetime(2024, 1, 1)], [dt.date(2024, 1, 1)]),
        ([b"a"], [b"a\x00"]),
    ],
    ids=repr,
)
def test_different_rows_hash_differently(left: list[object], right: list[object]) -> None:
    assert encode_row(left) != encode_row(right)
    assert digest(left) != digest(right)


@SETTINGS
@given(SAFE_DATETIMES, st.integers(min_value=1, max_value=999_999))
def test_microseconds_matter(value: dt.datetime, micros: int) -> None:
    later = value + dt.timedelta(microseconds=micros)
    assert digest([value]) != digest([later])


TEXT_ROWS = st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=6)


@SETTINGS
@given(TEXT_ROWS, TEXT_ROWS)
def test_framing_is_injective(left: list[str | None], right: list[str | None]) -> None:
    assume([canonical_text(v) for v in left] != [canonical_text(v) for v in right])
    assert encode_row(left) != encode_row(right)


@SETTINGS
@given(st.lists(st.integers(), min_size=2, max_size=8, unique=True), st.randoms())
def test_column_order_matters(values: list[int], random: object) -> None:
    shuffled = values[:]
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assume(shuffled != values)
    assert digest(values) != digest(shuffled)


# --- RowHasher ----------------------------------------------------------------------------------

@SETTINGS
@given(
    st.lists(st.one_of(st.none(), st.integers(), st.text(), FINITE_DECIMALS, SAFE_DATETIMES), min_size=1),
    st.data(),
)
def test_row_hasher_agrees_with_digest(row: list[object], data: st.DataObject) -> None:
    positions = data.draw(st.lists(st.integers(0, len(row) - 1), min_size=1, max_size=3))
    key_hash, row_hash = RowHasher(positions)(row)
    assert key_hash == digest([row[p] for p in positions]) == _hash_of([row[p] for p in positions])
    assert row_hash == digest(row)


def test_key_order_matters() -> None:
    row = ["a", "b"]
    assert RowHasher([0, 1])(row)[0] != RowHasher([1, 0])(row)[0]


@pytest.mark.parametrize("positions", [[], [-1], [0.5], ["0"]], ids=repr)
def test_row_hasher_refuses_bad_key_positions(positions: list[object]) -> None:
    with pytest.raises(ValueError):
        RowHasher(positions)  # type: ignore[arg-type]


# --- table fingerprint --------------------------------------------------------------------------

# Realistic row hashes: digests of distinct rows, never hand-built near-collisions.
ROW_HASHES = st.lists(st.integers(), unique=True, max_size=40).map(
    lambda keys: [digest([key]) for key in keys]
)


def _fingerprint(hashes: list[str]) -> TableFingerprint:
    fingerprint = TableFingerprint()
    for row_hash in hashes:
        fingerprint.add(row_hash)
    return fingerprint


@SETTINGS
@given(ROW_HASHES.flatmap(lambda hashes: st.tuples(st.just(hashes), st.permutations(hashes))))
def test_fingerprint_is_order_independent(pair: tuple[list[str], list[str]]) -> None:
    hashes, permuted = pair
    assert _fingerprint(hashes) == _fingerprint(permuted)


@SETTINGS
@given(ROW_HASHES, st.data())
def test_merge_equals_adding_all(hashes: list[str], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(hashes)))
    merged = _fingerprint(hashes[:cut])
    merged.merge(_fingerprint(hashes[cut:]))
    assert merged == _fingerprint(hashes)


@SETTINGS
@given(ROW_HASHES.filter(lambda hashes: len(hashes) >= 2), st.data())
def test_fingerprint_notices_changed_missing_and_duplicated_rows(
    hashes: list[str], data: st.DataObject
) -> None:
    i, j = data.draw(st.lists(st.integers(0, len(hashes) - 1), min_size=2, max_size=2, unique=True))
    original = _fingerprint(hashes)
    changed = hashes[:i] + [digest(["changed", hashes[i]])] + hashes[i + 1:]
    missing = hashes[:i] + hashes[i + 1:]
    duplicated = hashes + [hashes[i]]
    twice = hashes + [hashes[i], hashes[i]]  # XOR alone cancels a pair
    duplicated_instead = hashes[:j] + [hashes[i]] + hashes[j + 1:]  # same count
    for variant in (changed, missing, duplicated, twice, duplicated_instead):
        assert _fingerprint(variant) != original
    assert _fingerprint(twice).xor60 == original.xor60
    assert _fingerprint(duplicated_instead).count == original.count


def test_empty_fingerprint_is_zero() -> None:
    assert TableFingerprint().to_dict() == {"count": 0, "xor60": 0, "sum32": 0}


def test_fingerprint_uses_documented_hex_slices() -> None:
    row_hash = "0123456789abcdef" + "fedcba9876543210"
    fingerprint = _fingerprint([row_hash])
    assert fingerprint.xor60 == int(row_hash[:15], 16)
    assert fingerprint.sum32 == int(row_hash[15:23], 16)
    assert fingerprint.xor60 < 2**60 and fingerprint.sum32 < 2**32


@SETTINGS
@given(ROW_HASHES)
def test_fingerprint_dict_round_trip(hashes: list[str]) -> None:
    fingerprint = _fingerprint(hashes)
    assert TableFingerprint.from_dict(fingerprint.to_dict()) == fingerprint


@pytest.mark.parametrize(
    "data",
    [
        {"count": -1, "xor60": 0, "sum32": 0},
        {"count": 1, "xor60": 2**60, "sum32": 0},
        {"count": 1, "xor60": 0, "sum32": 2**32},
        {"count": 1, "xor60": "0", "sum32": 0},
        {"count": True, "xor60": 0, "sum32": 0},
    ],
    ids=repr,
)
def test_fingerprint_from_dict_refuses_impossible_numbers(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TableFingerprint.from_dict(data)


@pytest.mark.parametrize(
    "row_hash",
    ["", "0" * 31, "0" * 33, "A" * 32, "+" + "0" * 31, " " + "0" * 31, "0_" + "0" * 30, None],
    ids=repr,
)
def test_fingerprint_refuses_what_is_not_a_row_hash(row_hash: object) -> None:
    with pytest.raises(ValueError):
        TableFingerprint().add(row_hash)  # type: ignore[arg-type]


def test_fingerprint_sql_parses_as_bigquery() -> None:
    expression = fingerprint_sql("`_row_hash`")
    assert expression == fingerprint_sql()
    select = sqlglot.parse_one(f"SELECT {expression} FROM t", read="bigquery")
    assert [column.alias for column in select.expressions] == ["row_count", "xor60", "sum32"]


@pytest.mark.parametrize(
    "column",
    ["_row_hash", "`a`b`", "`x`) FROM t; DROP TABLE t --`", "``", "`a\\`", "`a` OR 1"],
    ids=repr,
)
def test_fingerprint_sql_refuses_unquoted_columns(column: str) -> None:
    with pytest.raises(ValueError):
        fingerprint_sql(column)


def test_fingerprint_sql_computes_what_python_computes() -> None:
    """Runs the BigQuery SQL, transpiled by sqlglot, on DuckDB: same numbers as Python."""
    duckdb = pytest.importorskip("duckdb")
    hashes = [digest([i]) for i in range(500)] + [digest([0])]  # with a duplicate
    query = sqlglot.transpile(f"SELECT {fingerprint_sql()} FROM t", read="bigquery", write="duckdb")[0]
    connection = duckdb.connect()
    connection.execute("CREATE TABLE t (_row_hash VARCHAR)")
    assert connection.execute(query).fetchone() == (0, 0, 0)
    connection.executemany("INSERT INTO t VALUES (?)", [[h] for h in hashes])
    count, xor60, sum32 = connection.execute(query).fetchone()
    assert TableFingerprint(count=count, xor60=xor60, sum32=sum32) == _fingerprint(hashes)
