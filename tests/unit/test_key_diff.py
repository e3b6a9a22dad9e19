import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.extractor.column_key_diff import ColumnKeyDiff
from shared.extractor.delta import KeyDiff, KeyOrderError
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN

TABLES = st.dictionaries(st.tuples(st.integers(0, 60), st.text("ab", max_size=2)), st.sampled_from("xyz"), max_size=40)


def _index(table: dict[tuple, str]) -> list[tuple[tuple, str, str]]:
    return [(key, f"k{key}", value) for key, value in sorted(table.items())]


@given(TABLES, TABLES, st.integers(1, 7))
def test_diff_finds_exactly_the_new_changed_and_deleted_keys(before: dict, after: dict, chunk: int) -> None:
    diff = KeyDiff(iter(_index(before)))
    current = sorted(after.items())
    shipped, deleted = [], []
    for start in range(0, len(current), chunk):
        keys = [k for k, _ in current[start:start + chunk]]
        hashes = [v for _, v in current[start:start + chunk]]
        changes = diff.feed(keys, hashes)
        shipped += [keys[i] for i in changes.changed]
        deleted += [key for key, _ in changes.deleted]
    deleted += [key for key, _ in diff.finish()]
    assert set(shipped) == {k for k, v in after.items() if before.get(k) != v}
    assert sorted(deleted) == sorted(before.keys() - after.keys())
    assert len(shipped) == len(set(shipped))


def test_source_out_of_order_is_detected() -> None:
    diff = KeyDiff(iter([((1,), "k1", "a"), ((2,), "k2", "b")]))
    with pytest.raises(KeyOrderError, match="source keys out of order"):
        diff.feed([(3,), (2,)], ["x", "y"])


def test_base_index_out_of_order_is_detected() -> None:
    diff = KeyDiff(iter([((2,), "k2", "b"), ((1,), "k1", "a")]))
    with pytest.raises(KeyOrderError, match="base index"):
        diff.feed([(3,)], ["x"])
        diff.finish()


def test_keys_of_types_python_cannot_order_are_an_order_error() -> None:
    diff = KeyDiff(iter([((1,), "k1", "a")]))
    with pytest.raises(KeyOrderError):
        diff.feed([("text",)], ["x"])


# --- the columnar merge join (one key column) against the row-by-row one --------------------------

SINGLE = st.dictionaries(st.integers(-30, 60), st.sampled_from("xyz"), max_size=50)
TEXTS = st.dictionaries(st.text("aAé€𝄞 ", max_size=3), st.sampled_from("xyz"), max_size=40)


def _batches(table: dict, kind: pa.DataType, size: int) -> list[pa.RecordBatch]:
    rows = sorted(table.items())
    return [pa.RecordBatch.from_pydict({"k": pa.array([k for k, _ in rows[i:i + size]], kind),
                                        KEY_HASH_COLUMN: [f"h{k}" for k, _ in rows[i:i + size]],
                                        ROW_HASH_COLUMN: [v for _, v in rows[i:i + size]]})
            for i in range(0, len(rows), size)]


def _run(diff: KeyDiff | ColumnKeyDiff, after: dict, kind: pa.DataType, chunk: int) -> tuple[list, list]:
    current = sorted(after.items())
    shipped, deleted = [], []
    for start in range(0, len(current), chunk):
        keys = [k for k, _ in current[start:start + chunk]]
        hashes = [v for _, v in current[start:start + chunk]]
        if isinstance(diff, ColumnKeyDiff):
            changes = diff.feed(pa.array(keys, kind), pa.array(hashes, pa.string()))
        else:
            changes = diff.feed([(k,) for k in keys], hashes)
        shipped += [keys[i] for i in changes.changed]
        deleted += changes.deleted
    return shipped, deleted + diff.finish()


@given(st.sampled_from([(SINGLE, pa.int64()), (TEXTS, pa.string())]).flatmap(
    lambda pair: st.tuples(pair[0], pair[0], st.just(pair[1]))), st.integers(1, 7), st.integers(1, 9))
def test_columnar_diff_equals_the_row_by_row_diff(tables: tuple, chunk: int, batch: int) -> None:
    before, after, kind = tables
    expected = _run(KeyDiff(iter([((k,), f"h{k}", v) for k, v in sorted(before.items())])), after, kind, chunk)
    got = _run(ColumnKeyDiff(iter(_batches(before, kind, batch)), "k"), after, kind, chunk)
    assert got == expected


def test_columnar_diff_detects_either_side_out_of_order() -> None:
    diff = ColumnKeyDiff(iter(_batches({1: "a", 2: "b"}, pa.int64(), 1)), "k")
    diff.feed(pa.array([3], pa.int64()), pa.array(["x"]))
    with pytest.raises(KeyOrderError, match="source keys out of order"):
        diff.feed(pa.array([2], pa.int64()), pa.array(["y"]))
    reversed_base = list(reversed(_batches({1: "a", 2: "b"}, pa.int64(), 1)))
    with pytest.raises(KeyOrderError, match="base index"):
        ColumnKeyDiff(iter(reversed_base), "k").feed(pa.array([5], pa.int64()), pa.array(["x"]))


def test_columnar_diff_of_keys_that_cannot_be_compared_is_an_order_error() -> None:
    diff = ColumnKeyDiff(iter(_batches({1: "a"}, pa.int64(), 1)), "k")
    with pytest.raises(KeyOrderError):
        diff.feed(pa.array(["text"]), pa.array(["x"]))
