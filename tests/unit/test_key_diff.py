import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.extractor.delta import KeyDiff, KeyOrderError

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
