import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.identifiers import (
    PIPELINE_COLUMNS,
    IdentifierError,
    bigquery_column_for,
    bigquery_name_for,
    quote_bigquery,
    source_name_for,
    source_part,
)

NAMES = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@pytest.mark.parametrize(("source", "bigquery"), [
    ("customer_id", "customer_id"),
    ("Order Date", "Order_x0020_Date"),
    ("select", "select"),
    ("1st", "_x0031_st"),
    ("price$", "price_x0024_"),
    ("naïve", "na_x00EF_ve"),
    ("a_x0020_b", "a_x005F_x0020_b"),
    ("emoji🌻", "emoji_U0001F33B_"),
    ("it's;`x`", "it_x0027_s_x003B__x0060_x_x0060_"),
    ("_TABLE_SUFFIX", "_x005F_TABLE_SUFFIX"),
    ("_row_hash", "_x005F_row_hash"),  # the names of the columns matrix-sync adds, in any case
    ("_KEY_Hash", "_x005F_KEY_Hash"),
])
def test_documented_examples(source: str, bigquery: str) -> None:
    assert bigquery_column_for(source) == bigquery
    assert source_name_for(bigquery) == source


@given(NAMES)
def test_mapping_is_reversible_and_always_valid(name: str) -> None:
    try:
        mapped = bigquery_column_for(name)
    except IdentifierError:
        assert len(name) > 30  # only names whose encoding exceeds BigQuery's 300 characters are refused
        return
    assert source_name_for(mapped) == name
    assert quote_bigquery(mapped) == f"`{mapped}`"
    assert mapped.lower() not in PIPELINE_COLUMNS


def test_a_table_may_be_named_like_a_pipeline_column() -> None:
    assert bigquery_name_for("_row_hash") == "_row_hash"


@given(NAMES, NAMES)
def test_distinct_names_never_collide(first: str, second: str) -> None:
    if first != second:
        try:
            assert bigquery_column_for(first) != bigquery_column_for(second)
        except IdentifierError:
            pass


@pytest.mark.parametrize("bad", ["", "tab\tname", "new\nline", " padded", "x" * 129])
def test_source_names_refused(bad: str) -> None:
    with pytest.raises(IdentifierError):
        source_part(bad)


def test_quoting_refuses_backticks() -> None:
    with pytest.raises(IdentifierError):
        quote_bigquery("p", "d", "t`; DROP")
