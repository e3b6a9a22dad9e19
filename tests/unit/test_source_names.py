from __future__ import annotations

import pytest

from shared.source_names import SourceNameError, matched, matched_all

NAMES = ["CustomerID", "Name", "name_2", "Code", "CODE"]


def test_the_exact_name_wins_then_the_one_equal_ignoring_case() -> None:
    assert matched("Code", NAMES, "column") == "Code"
    assert matched("customerid", NAMES, "column") == "CustomerID"
    assert matched("NAME", NAMES, "column") == "Name"
    assert matched("nope", NAMES, "column") is None
    assert matched_all(["CUSTOMERID", "name_2"], NAMES, "key column") == ["CustomerID", "name_2"]


def test_names_differing_only_in_case_are_not_guessed() -> None:
    with pytest.raises(SourceNameError, match=r"key column 'code' matches \['Code', 'CODE'\] ignoring case"):
        matched_all(["code"], NAMES, "key column")


def test_a_missing_name_is_named_with_the_nearest_or_all_names() -> None:
    with pytest.raises(SourceNameError, match=r"no key column\(s\) \['CustomerIDs'\]; did you mean "
                                              r"'CustomerIDs' -> 'CustomerID'\?"):
        matched_all(["CustomerIDs", "Name"], NAMES, "key column")
    with pytest.raises(SourceNameError, match=r"no key column\(s\) \['zzz'\]; columns are \['CustomerID', "):
        matched_all(["zzz"], NAMES, "key column")
