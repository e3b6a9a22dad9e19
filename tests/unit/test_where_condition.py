import pytest

from matrix_sync.operator_views import OperatorError
from matrix_sync.where_condition import checked_condition


@pytest.mark.parametrize("condition", [
    "id = 1",
    "(a = 1 OR b = 2) AND c IS NULL",
    "note = 'a;b)' OR note = \"-- (\"",
    "note = 'it\\'s )' AND `odd ) name` = 1",
    "REGEXP_CONTAINS(code, r'^\\(x\\)')",
    "note = '''three ' quotes ) '''",
])
def test_a_condition_whose_parentheses_and_quotes_balance_is_taken_as_it_is(condition: str) -> None:
    assert checked_condition(condition) == condition


@pytest.mark.parametrize(("condition", "refusal"), [
    ("id = 1) OR (1 = 1", "closes a parenthesis it did not open"),
    ("id = 1 OR TRUE)", "closes a parenthesis it did not open"),
    ("(id = 1", "leaves 1 parenthesis(es) open"),
    ("TRUE; DROP TABLE x", "without ';'"),
    ("id = 1 --", "no comments"),
    ("id = 1 /* ) OR TRUE */", "no comments"),
    ("id = 1 # x", "no comments"),
    ("note = 'open", "unterminated string"),
    ("`name = 1", "unterminated quoted name"),
    ("note = r'\\') OR (TRUE", "unterminated string"),
    ("   ", "needs a condition"),
])
def test_a_condition_that_could_reach_past_its_parentheses_is_refused(condition: str, refusal: str) -> None:
    with pytest.raises(OperatorError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        checked_condition(condition)
