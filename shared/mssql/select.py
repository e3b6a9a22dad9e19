"""The T-SQL SELECT that streams a SQL Server table, ordered by its key, optionally within a key range.

Each column is projected so the driver returns a value the Arrow converters of `shared.types` take
exactly, whatever the driver or TDS version:

* ``hierarchyid`` -> ``col.ToString()`` ('/1/2/'), ``geometry``/``geography`` -> ``col.STAsText()``
  (WKT; geography in longitude-latitude order, as BigQuery's GEOGRAPHY expects). Unprojected,
  drivers return the CLR binary serialisation.
* ``xml`` -> ``nvarchar(max)``: the document as text.
* ``datetimeoffset`` -> text ``'yyyy-mm-dd hh:mi:ss.fffffff+hh:mm'``, built from the local wall
  clock (``CAST(col AS datetime2(7))``, style 121) and ``DATENAME(TZOFFSET, col)``. The offset is
  kept in the text, which ``datetime.fromisoformat`` (Python 3.11+) and pydantic both parse (with no
  space before the offset), so the TIMESTAMP converter lands the exact UTC instant (7th fractional
  digit truncated, as everywhere). Not left to the driver: pymssql returns an aware datetime only
  over TDS 7.3+, and other drivers fail on the type.
* ``sql_variant`` -> ``nvarchar(4000)`` text, by base type so nothing is silently rounded: date and
  time bases in ISO order with every fractional digit (style 121; a plain CONVERT of a datetime
  gives 'Jan  1 2024 12:00AM'), float/real in 16-digit scientific notation (style 2; a plain
  CONVERT keeps 6 digits), money via ``decimal(19,4)`` (a plain CONVERT keeps 2 decimals), binary
  as ``0x...`` hex (style 1).
* everything else as is (``uniqueidentifier`` arrives as ``uuid.UUID``, ``money`` as Decimal).

Rows come in the order Python compares the converted key values in, because delta snapshots merge
them against the previous snapshot's index in that order (`shared.extractor.delta`): text keys sort
by ``Latin1_General_100_BIN2`` over their nvarchar text (UTF-16 code units: code-point order except
characters beyond U+FFFF against U+E000-U+FFFF, where the delta's order check then falls back to a
full snapshot); ``varchar``/``char`` go through nvarchar first so a code page's byte order does not
decide; ``uniqueidentifier`` sorts as its text (SQL Server's own GUID order is byte-shuffled) and
``hierarchyid`` as its ``ToString()``. The predicates of a key range use the same expressions.
SQL Server pads the shorter string with spaces when comparing, so a key ending in a character below
the space (a tab, say) sorts differently from Python; that too only costs a full snapshot.

A keyless table (empty key) is read without ORDER BY and without key ranges: its snapshots are
always full and matched by row hash, so row order carries nothing and a sort would only cost a
sort of the whole table in tempdb.

The key range is exclusive below and inclusive above, ``lower < key <= upper``, so consecutive
ranges ``(None, k1], (k1, k2], (k2, None)`` cover a table exactly once. A composite key compares as
a row value, expanded because T-SQL has no row-value comparison:
``(a > :lo_0) OR (a = :lo_0 AND b > :lo_1)``. Rows with a NULL key fall in no range; the validator
refuses NULL keys anyway. Bounds are bind parameters, never literals.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from shared.mssql.quoting import quote_mssql, quote_mssql_escaped
from shared.schema import Column

TABLE_ALIAS = "src"
BINARY_COLLATION = "Latin1_General_100_BIN2"
_NVARCHAR_MAX_LENGTH = 4000

_VARIANT_DATETIME = ("datetime", "smalldatetime", "datetime2")
_VARIANT_FLOAT = ("float", "real")
_VARIANT_MONEY = ("money", "smallmoney")
_VARIANT_BINARY = ("binary", "varbinary")

Quote = Callable[[str], str]


@dataclass(frozen=True)
class MssqlSelect:
    """One statement: `sql` is the T-SQL the server receives (bind parameters as ``:name``),
    `params` their values; `clause()` is the same statement as a SQLAlchemy TextClause."""

    sql: str
    params: dict[str, object] = field(default_factory=dict)
    escaped_sql: str = ""

    def clause(self) -> sa.TextClause:
        """Ready for ``connection.execute``; colons inside identifiers are escaped for `text()`."""
        text = sa.text(self.escaped_sql or self.sql)
        return text.bindparams(**self.params) if self.params else text


def base_type(column: Column) -> str:
    """``datetime2(7)`` -> ``datetime2``: the projection depends on the type, not its parameters."""
    return column.source_type.split("(", 1)[0].strip().lower()


def _variant_base(ref: str) -> str:
    return f"CAST(SQL_VARIANT_PROPERTY({ref}, 'BaseType') AS nvarchar(128))"


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"N'{v}'" for v in values)


def _offset_text(ref: str, length: int = 27) -> str:
    """'yyyy-mm-dd hh:mi:ss.fffffff+hh:mm' of a datetimeoffset expression; NULL stays NULL
    (explicitly: CONCAT_NULL_YIELDS_NULL is a session setting)."""
    return (f"CASE WHEN {ref} IS NULL THEN NULL ELSE CONVERT(varchar({length}), CAST({ref} AS datetime2(7)), 121)"
            f" + DATENAME(TZOFFSET, {ref}) END")


def _variant_text(ref: str) -> str:
    kind = _variant_base(ref)
    offset = f"CAST({ref} AS datetimeoffset(7))"
    return (
        f"CASE WHEN {ref} IS NULL THEN NULL"
        f" WHEN {kind} = N'datetimeoffset' THEN {_offset_text(offset)}"
        f" WHEN {kind} IN ({_in(_VARIANT_DATETIME)}) THEN CONVERT(nvarchar(4000), CAST({ref} AS datetime2(7)), 121)"
        f" WHEN {kind} = N'date' THEN CONVERT(nvarchar(4000), CAST({ref} AS date), 121)"
        f" WHEN {kind} = N'time' THEN CONVERT(nvarchar(4000), CAST({ref} AS time(7)), 121)"
        f" WHEN {kind} IN ({_in(_VARIANT_FLOAT)}) THEN CONVERT(nvarchar(4000), CAST({ref} AS float), 2)"
        f" WHEN {kind} IN ({_in(_VARIANT_MONEY)}) THEN CONVERT(nvarchar(4000), CAST({ref} AS decimal(19, 4)))"
        f" WHEN {kind} IN ({_in(_VARIANT_BINARY)}) THEN CONVERT(nvarchar(4000), CAST({ref} AS varbinary(8000)), 1)"
        f" ELSE CONVERT(nvarchar(4000), {ref}) END"
    )


def projection(column: Column, quote: Quote = quote_mssql) -> str:
    """The select-list item for one column, aliased to its own name."""
    ref = f"{quote(TABLE_ALIAS)}.{quote(column.name)}"
    kind = base_type(column)
    if kind == "hierarchyid":
        expression = f"{ref}.ToString()"
    elif kind in ("geography", "geometry"):
        expression = f"{ref}.STAsText()"
    elif kind == "xml":
        expression = f"CONVERT(nvarchar(max), {ref})"
    elif kind == "datetimeoffset":
        expression = _offset_text(ref)
    elif kind == "sql_variant":
        expression = _variant_text(ref)
    else:
        return ref
    return f"{expression} AS {quote(column.name)}"


def order_expression(column: Column, quote: Quote = quote_mssql) -> str:
    """The expression a key column is sorted and range-compared by (see the module docstring)."""
    ref = f"{quote(TABLE_ALIAS)}.{quote(column.name)}"
    kind = base_type(column)
    if kind in ("nchar", "nvarchar", "sysname"):
        return f"{ref} COLLATE {BINARY_COLLATION}"
    if kind in ("char", "varchar"):
        length = column.length if column.length and column.length <= _NVARCHAR_MAX_LENGTH else "max"
        return f"CAST({ref} AS nvarchar({length})) COLLATE {BINARY_COLLATION}"
    if kind == "uniqueidentifier":
        return f"CAST({ref} AS nchar(36)) COLLATE {BINARY_COLLATION}"
    if kind == "hierarchyid":
        return f"CAST({ref}.ToString() AS nvarchar(4000)) COLLATE {BINARY_COLLATION}"
    return ref


def _range_condition(key_refs: list[str], names: list[str], strict: str, last: str) -> str:
    """Row-value comparison expanded: for each position i, the earlier parts equal and part i
    compared with `strict`, the last part with `last` (``>``/``>`` below, ``<``/``<=`` above)."""
    terms = []
    for i, ref in enumerate(key_refs):
        parts = [f"{key_refs[j]} = :{names[j]}" for j in range(i)]
        parts.append(f"{ref} {last if i == len(key_refs) - 1 else strict} :{names[i]}")
        terms.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(terms) + ")"


def _bounds(key: list[str], lower: tuple | None, upper: tuple | None) -> dict[str, object]:
    params: dict[str, object] = {}
    for prefix, bound in (("lo", lower), ("hi", upper)):
        if bound is None:
            continue
        if len(bound) != len(key):
            raise ValueError(f"a key bound needs {len(key)} value(s) for key {key}, got {len(bound)}")
        if any(value is None for value in bound):
            raise ValueError("a key bound cannot contain NULL: NULL compares with nothing")
        params.update({f"{prefix}_{i}": value for i, value in enumerate(bound)})
    return params


def _bound_value(column: Column, value: object) -> object:
    """A GUID bound as the uppercase text its key sorts by (``CAST(guid AS nchar(36))``)."""
    return str(value).upper() if base_type(column) == "uniqueidentifier" else value


def _render(schema_name: str | None, table: str, columns: list[Column], key: list[str],
            lower: tuple | None, upper: tuple | None, quote: Quote) -> str:
    source = f"{quote(schema_name)}.{quote(table)}" if schema_name else quote(table)
    select_list = ",\n    ".join(projection(c, quote) for c in columns)
    by_name = {c.name: c for c in columns}
    key_refs = [order_expression(by_name[k], quote) for k in key]
    conditions = []
    if lower is not None:
        conditions.append(_range_condition(key_refs, [f"lo_{i}" for i in range(len(key))], ">", ">"))
    if upper is not None:
        conditions.append(_range_condition(key_refs, [f"hi_{i}" for i in range(len(key))], "<", "<="))
    where = f"\nWHERE {' AND '.join(conditions)}" if conditions else ""
    # Qualified ORDER BY: a bare name could resolve to a projected alias of the same name
    # (a datetimeoffset key would then sort as text).
    order = f"\nORDER BY {', '.join(key_refs)}" if key_refs else ""
    return f"SELECT\n    {select_list}\nFROM {source} AS {quote(TABLE_ALIAS)}{where}{order}"


def select_statement(schema_name: str | None, table: str, columns: list[Column], key: list[str],
                     lower: tuple | None = None, upper: tuple | None = None) -> MssqlSelect:
    """The streaming SELECT of `columns` (snapshot order) from `schema_name`.`table`, ordered by
    `key`, limited to ``lower < key <= upper`` when bounds are given; unordered and unbounded for a
    keyless table (empty `key`)."""
    if not columns:
        raise ValueError("a SELECT needs at least one column")
    names = {c.name for c in columns}
    missing = [k for k in key if k not in names]
    if missing:
        raise ValueError(f"key {key} must be among the selected columns (missing {missing})")
    if not key and (lower is not None or upper is not None):
        raise ValueError("a keyless table has no key ranges")
    by_name = {c.name: c for c in columns}
    params = {name: _bound_value(by_name[key[int(name.split("_")[1])]], value)
              for name, value in _bounds(key, lower, upper).items()}
    return MssqlSelect(
        sql=_render(schema_name, table, columns, key, lower, upper, quote_mssql),
        params=params,
        escaped_sql=_render(schema_name, table, columns, key, lower, upper, quote_mssql_escaped),
    )
