"""A config's table and column names matched to the source's own spelling.

SQL Server's default collations, SQLite and MySQL find a table or a column in whatever case it is
written, and PostgreSQL folds an unquoted name to lower case, so a config written the way its author
writes SQL names `CustomerID` as `customerid` and `public.customers` as `public.Customers`. The
exact name is taken first, else the one name equal to it ignoring case; where several names differ
only in case (a case-sensitive source), none is guessed."""
from __future__ import annotations

import difflib
from collections.abc import Sequence


class SourceNameError(LookupError):
    """A configured name the source does not hold, or holds in several cases."""


def matched(wanted: str, names: Sequence[str], what: str) -> str | None:
    """The source's spelling of `wanted` (a `what`: table, key column, ...); None when it has none."""
    if wanted in names:
        return wanted
    folded = [name for name in names if name.casefold() == wanted.casefold()]
    if len(folded) > 1:
        raise SourceNameError(f"{what} {wanted!r} matches {folded} ignoring case: write it exactly as the source does")
    return folded[0] if folded else None


def matched_all(wanted: Sequence[str], names: Sequence[str], what: str, among: str = "columns") -> list[str]:
    """Each of `wanted` in the source's spelling; SourceNameError naming the missing ones and the
    nearest of the `among` (columns, tables) the source holds: "no key column(s) ['cust_id']; did
    you mean 'cust_id' -> 'CustID'?"."""
    found = [matched(name, names, what) for name in wanted]
    missing = [name for name, match in zip(wanted, found) if match is None]
    if missing:
        raise SourceNameError(f"no {what}(s) {missing}{nearest(missing, names, among)}")
    return [match for match in found if match is not None]


def nearest(missing: Sequence[str], names: Sequence[str], among: str) -> str:
    """A hint for a misspelt name: the closest of the names (`among`: "tables") or all of them when few."""
    hints = [f"{name!r} -> {match[0]!r}" for name in missing
             if (match := difflib.get_close_matches(name, names, n=1, cutoff=0.6))]
    if hints:
        return f"; did you mean {', '.join(hints)}?"
    if len(names) <= 30:
        return f"; {among} are {list(names)}"
    return ""
