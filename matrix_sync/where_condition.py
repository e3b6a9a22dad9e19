"""The condition an operator gives `delete --where`: BigQuery SQL that the DELETE wraps in
parentheses, so it must not reach past them. Its text is scanned as BigQuery reads it: string
literals (quoted, triple-quoted, raw: a backslash always takes the next character along) and
`quoted names` are skipped, and outside them a parenthesis closed before it was opened, one left
open, a ';' or a comment (which would hide the closing parenthesis) is refused."""
from __future__ import annotations

from matrix_sync.operator_views import OperatorError


def checked_condition(where: str) -> str:
    if not where.strip():
        raise OperatorError("--where needs a condition")
    depth, at = 0, 0
    while at < len(where):
        char = where[at]
        if char in "'\"`":
            at = _after_quoted(where, at)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise OperatorError(f"--where closes a parenthesis it did not open (at character {at + 1}): it would "
                                    "widen the DELETE beyond the condition")
        elif char == ";":
            raise OperatorError("--where takes one condition, without ';'")
        elif char == "#" or where.startswith(("--", "/*"), at):
            raise OperatorError("--where takes no comments (one could hide the DELETE's closing parenthesis)")
        at += 1
    if depth:
        raise OperatorError(f"--where leaves {depth} parenthesis(es) open")
    return where


def _after_quoted(text: str, start: int) -> int:
    """The position after the string literal or quoted name that starts at `start`."""
    quote = text[start]
    closing = quote * 3 if quote != "`" and text.startswith(quote * 3, start) else quote
    at = start + len(closing)
    while at < len(text):
        if text[at] == "\\":
            at += 2
        elif text.startswith(closing, at):
            return at + len(closing)
        else:
            at += 1
    raise OperatorError(f"--where has an unterminated {'quoted name' if quote == '`' else 'string'} "
                        f"(from character {start + 1})")
