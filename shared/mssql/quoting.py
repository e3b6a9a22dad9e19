"""Bracket quoting of SQL Server identifiers.

A SQL Server name may hold almost anything, so names from the catalog are quoted, never checked
against a narrow pattern: ``]`` is doubled inside ``[...]``, which is the whole of T-SQL's escaping
rule for delimited identifiers. Refused outright are what no sane schema holds and what would make
the text mean something else on its way to the server:

* control characters (a newline or NUL in a name is far likelier an attack or a bug than a column);
* ``%(``: pymssql substitutes ``%(name)s`` anywhere in the statement text, brackets or not;
* more than 128 characters (``sysname``).

Statements run through SQLAlchemy's `text()`, which takes ``:word`` for a bind parameter even inside
brackets; `sqlalchemy_escape` escapes those colons so SQLAlchemy sends them verbatim.
"""
from __future__ import annotations

from shared.identifiers import IdentifierError

_MAX_LENGTH = 128


def quote_mssql(name: str) -> str:
    """``[name]`` with ``]`` doubled; IdentifierError for a name that cannot be quoted safely."""
    if not isinstance(name, str) or not name:
        raise IdentifierError(f"invalid SQL Server identifier {name!r}")
    if len(name) > _MAX_LENGTH:
        raise IdentifierError(f"SQL Server identifier longer than {_MAX_LENGTH} characters: {name[:40]!r}...")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in name):
        raise IdentifierError(f"control character in SQL Server identifier {name!r}")
    if "%(" in name:
        raise IdentifierError(f"SQL Server identifier {name!r} contains '%(', which pymssql takes for a parameter")
    return "[" + name.replace("]", "]]") + "]"


def quote_mssql_escaped(name: str) -> str:
    """`quote_mssql` for text that goes through SQLAlchemy's `text()`: colons escaped."""
    return sqlalchemy_escape(quote_mssql(name))


def sqlalchemy_escape(quoted: str) -> str:
    """Colons as ``\\:`` so `text()` neither binds nor mangles them; it sends a plain ``:``."""
    return quoted.replace(":", "\\:")
