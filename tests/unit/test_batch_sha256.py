"""`shared.batch_sha256`: DataFusion's digests are hashlib's, value for value, and hashing leaves
nothing behind in the session."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import batch_sha256

VALUES = st.lists(st.binary(max_size=300) | st.sampled_from([b"", b"\x00", b"~", "😀".encode()]), max_size=60)
ARROW_TYPES = st.sampled_from([pa.binary(), pa.large_binary(), pa.string(), pa.large_string()])


def _array(values: list[bytes], kind: pa.DataType, skip: int) -> pa.Array:
    """`values` as an array of `kind`; with `skip`, a slice of a longer one (a non-zero offset)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = [v.decode("utf-8", "replace").encode() for v in values]
    padded = pa.array([b"pad"] * skip + values, pa.binary()).cast(kind)
    return padded.slice(skip)


def _expected(values: list[bytes], kind: pa.DataType) -> np.ndarray:
    texts = _array(values, kind, 0).cast(pa.binary()).to_pylist()
    return np.array([list(hashlib.sha256(v).digest()) for v in texts], np.uint8).reshape(len(texts), 32)


@settings(deadline=None, max_examples=120)
@given(st.lists(st.tuples(VALUES, ARROW_TYPES, st.integers(0, 3)), min_size=1, max_size=3))
def test_datafusion_and_hashlib_digests_are_sha256_of_each_value(arrays) -> None:
    length = len(arrays[0][0])
    arrays = [(values[:length] + [b"x"] * (length - len(values)), kind, skip) for values, kind, skip in arrays]
    inputs = [_array(values, kind, skip) for values, kind, skip in arrays]
    accelerated = batch_sha256._datafusion_digests(inputs)
    assert accelerated is not None, "DataFusion refused plain string/binary arrays"
    for digest, array, (values, kind, _) in zip(accelerated, inputs, arrays, strict=True):
        expected = _expected(values, kind)
        assert digest.shape == (len(values), 32)
        np.testing.assert_array_equal(digest, expected)
        np.testing.assert_array_equal(batch_sha256.hashlib_digests(array), expected)


def test_the_session_keeps_no_input_table() -> None:
    rows = pa.array([f"{n}:{'x' * n}" for n in range(1000)])
    for _ in range(3):
        batch_sha256.digests([rows, rows.slice(10, 20)])
    context = batch_sha256._local.context
    assert not context.table_exist(batch_sha256._INPUT)
    assert context.catalog().schema().names() == set()


def test_without_datafusion_hashlib_hashes(monkeypatch) -> None:
    monkeypatch.setattr(batch_sha256, "_datafusion", lambda: None)
    rows = pa.array(["1:a", "", "2:bc"])
    [digest] = batch_sha256.digests([rows])
    assert [bytes(d).hex() for d in digest] == [hashlib.sha256(v.encode()).hexdigest() for v in rows.to_pylist()]


def test_a_refused_batch_leaves_the_next_one_to_datafusion() -> None:
    assert batch_sha256._datafusion_digests([pa.array([[1], [2]])]) is None  # no sha256 of a list: refused
    assert not batch_sha256._local.context.table_exist(batch_sha256._INPUT)
    assert batch_sha256._datafusion_digests([pa.array(["a", "b"])]) is not None
