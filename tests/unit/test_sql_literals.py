import datetime as dt

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from shared import sql_literals as lit

PRINTABLE = st.text(st.characters(min_codepoint=0x20, blacklist_characters="\x7f", blacklist_categories=("Cs",)))


@given(PRINTABLE)
def test_any_printable_string_stays_one_literal_with_its_value(value: str) -> None:
    statement = sqlglot.parse_one(f"SELECT {lit.string(value)} AS v", read="bigquery")
    assert isinstance(statement, exp.Select)
    [projection] = statement.expressions
    literal = projection.this
    assert isinstance(literal, exp.Literal) and literal.is_string
    assert literal.this == value


def test_hostile_value_does_not_add_statements() -> None:
    hostile = "x'; DROP TABLE `p.d.t`; --\\'"
    statements = sqlglot.parse(f"{lit.declare('v', 'STRING', lit.string(hostile))} SELECT v", read="bigquery")
    assert not any(isinstance(s, exp.Drop) for s in statements)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="control character"):
        lit.string("line\nbreak")
    with pytest.raises(TypeError):
        lit.integer(True)
    with pytest.raises(ValueError, match="aware"):
        lit.timestamp(dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="variable name"):
        lit.declare("x; DROP", "STRING", "''")
    assert lit.timestamp(dt.datetime(2026, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "TIMESTAMP '2026-01-01T00:00:00+00:00'")
