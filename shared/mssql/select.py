"""The T-SQL SELECT that streams a SQL Server table, ordered by its key, optionally within a key range.

Each column is projected so the driver returns a value the Arrow converters of `shared.types` take
exactly, whatever the driver or TDS version:

* ``hierarchyid`` -> ``col.ToString()`` ('/1/2/'). Unprojected, drivers return the CLR binary
  serialisation of these and the spatial types.
* ``geometry`` (lands in STRING) -> EWKT ``'SRID=n;' + col.AsTextZM()``: Z and M values and the SRID
  are part of the value, so a change in any of them is a change (``STAsText()`` drops all three).
* ``geography`` (lands in GEOGRAPHY) -> ``col.STAsText()``: 2-D WKT in longitude-latitude order, what
  BigQuery's GEOGRAPHY (a point set on WGS84, no Z, M or SRID) holds; Z, M and the SRID are not kept.
* ``xml`` -> ``nvarchar(max)``: the document as text.
* ``datetimeoffset`` -> text ``'yyyy-mm-dd hh:mi:ss.fffffff+hh:mm'``, built from the local wall
  clock (``CAST(col AS datetime2(7))``, style 121) and ``DATENAME(TZOFFSET, col)``. The offset is
  kept in the text, which ``datetime.fromisoformat`` (Python 3.11+) and pydantic both parse (with no
  space before the offset), so the TIMESTAMP converter lands the exact UTC instant (7th fractional
  digit truncated, as everywhere). Not left to the driver: pymssql returns an aware datetime only
  over TDS 7.3+, and other drivers fail on the type.
* ``sql_variant`` -> ``nvarchar(max)`` text (a varchar variant holds up to 8,000 characters, a binary
  one 16,002 in hex), by base type so nothing is silently rounded: date and time bases in ISO order
  with every fractional digit (style 121; a plain CONVERT of a datetime gives 'Jan  1 2024
  12:00AM'), float/real in 17-digit scientific notation (style 3, SQL Server 2016+: every distinct
  float a distinct text; a plain CONVERT keeps 6 digits), money via ``decimal(19,4)`` (a plain
  CONVERT keeps 2 decimals), binary as ``0x...`` hex (style 1).
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
refuses NULL keys anyway. Bounds are bind parameters, never literals. A date or time bound is sent as
ISO 8601 text and converted to the key's own type in an explicit style (``CONVERT(datetime, :lo_0,
126)``): pymssql would send a datetime as ``'2024-01-02 03:04:05.123'``, which ``datetime`` and
``smalldatetime`` read under the session's DATEFORMAT (a dmy login swaps day and month) and which
drops a ``datetime2``'s microseconds; a ``datetimeoffset`` bound keeps its offset and 7 digits.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from shared.mssql.quoting import quote_mssql, quote_mssql_escaped
from shared.schema import Column

TABLE_ALIAS = "src"
BINARY_COLLATION = "Latin1_General_100_BIN2"
_NVARCHAR_MAX_LENGTH = 4000
_FRACTIONAL_SECONDS = ("time", "datetime2", "datetimeoffset")
# ISO 8601 input styles: 126 yyyy-mm-ddThh:mi:ss[.f...], 127 the same with its offset, 23 yyyy-mm-dd.
_ISO_STYLES = {"datetime": 126, "smalldatetime": 126, "datetime2": 126, "datetimeoffset": 127, "date": 23}
_TIMESPECS = {"datetime": "milliseconds", "smalldatetime": "seconds"}  # the digits the type takes from text

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
        f" WHEN {kind} IN ({_in(_VARIANT_DATETIME)}) THEN CONVERT(nvarchar(max), CAST({ref} AS datetime2(7)), 121)"
        f" WHEN {kind} = N'date' THEN CONVERT(nvarchar(max), CAST({ref} AS date), 121)"
        f" WHEN {kind} = N'time' THEN CONVERT(nvarchar(max), CAST({ref} AS time(7)), 121)"
        f" WHEN {kind} IN ({_in(_VARIANT_FLOAT)}) THEN CONVERT(nvarchar(max), CAST({ref} AS float), 3)"
        f" WHEN {kind} IN ({_in(_VARIANT_MONEY)}) THEN CONVERT(nvarchar(max), CAST({ref} AS decimal(19, 4)))"
        f" WHEN {kind} IN ({_in(_VARIANT_BINARY)}) THEN CONVERT(varchar(max), CAST({ref} AS varbinary(8000)), 1)"
        f" ELSE CONVERT(nvarchar(max), {ref}) END"
    )


def _geometry_text(ref: str) -> str:
    """EWKT 'SRID=n;POINT (1 2 3 4)'; NULL stays NULL (explicitly: CONCAT_NULL_YIELDS_NULL is a
    session setting)."""
    return (f"CASE WHEN {ref} IS NULL THEN NULL ELSE N'SRID=' + CAST({ref}.STSrid AS nvarchar(11)) + N';'"
            f" + {ref}.AsTextZM() END")


def projection(column: Column, quote: Quote = quote_mssql) -> str:
    """The select-list item for one column, aliased to its own name."""
    ref = f"{quote(TABLE_ALIAS)}.{quote(column.name)}"
    kind = base_type(column)
    if kind == "hierarchyid":
        expression = f"{ref}.ToString()"
    elif kind == "geometry":
        expression = _geometry_text(ref)
    elif kind == "geography":
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


def _temporal_type(column: Column) -> str:
    """The key's date or time type, from the catalog's name and precision (no catalog text)."""
    kind = base_type(column)
    return f"{kind}({column.precision})" if kind in _FRACTIONAL_SECONDS and column.precision is not None else kind


def _bound_ref(column: Column, name: str) -> str:
    """The placeholder of a bound as the key's type: a date or time from ISO 8601 text (see the
    module docstring); a time's text means the same in every language, so a plain CAST."""
    kind = base_type(column)
    if kind == "time":
        return f"CAST(:{name} AS {_temporal_type(column)})"
    if kind in _ISO_STYLES:
        return f"CONVERT({_temporal_type(column)}, :{name}, {_ISO_STYLES[kind]})"
    return f":{name}"


def _range_condition(key_refs: list[str], bounds: list[str], strict: str, last: str) -> str:
    """Row-value comparison expanded: for each position i, the earlier parts equal and part i
    compared with `strict`, the last part with `last` (``>``/``>`` below, ``<``/``<=`` above)."""
    terms = []
    for i, ref in enumerate(key_refs):
        parts = [f"{key_refs[j]} = {bounds[j]}" for j in range(i)]
        parts.append(f"{ref} {last if i == len(key_refs) - 1 else strict} {bounds[i]}")
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
    """A GUID bound as the uppercase text its key sorts by (``CAST(guid AS nchar(36))``), a date or
    time bound as the ISO 8601 text `_bound_ref` converts."""
    kind = base_type(column)
    if kind == "uniqueidentifier":
        return str(value).upper()
    if kind in _ISO_STYLES or kind == "time":
        return _iso_text(kind, value)
    return value


def _iso_text(kind: str, value: object) -> object:
    """'2024-01-02T03:04:05.123456[+05:30]' ('.123' for datetime, no fraction for smalldatetime,
    which take no more digits from text); a text bound (a datetimeoffset key's projected text) with
    its date and time joined by 'T', every digit and the offset kept."""
    if isinstance(value, dt.datetime) and kind != "date":
        return value.isoformat(timespec=_TIMESPECS.get(kind, "microseconds"))
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, str) and kind != "time":
        return value.strip().replace(" ", "T", 1)
    return value


def _table_name(schema_name: str | None, table: str, quote: Quote) -> str:
    return f"{quote(schema_name)}.{quote(table)}" if schema_name else quote(table)


def _render(schema_name: str | None, table: str, columns: list[Column], key: list[str],
            lower: tuple | None, upper: tuple | None, quote: Quote) -> str:
    source = _table_name(schema_name, table, quote)
    select_list = ",\n    ".join(projection(c, quote) for c in columns)
    by_name = {c.name: c for c in columns}
    key_refs = [order_expression(by_name[k], quote) for k in key]
    conditions = []
    if lower is not None:
        lows = [_bound_ref(by_name[k], f"lo_{i}") for i, k in enumerate(key)]
        conditions.append(_range_condition(key_refs, lows, ">", ">"))
    if upper is not None:
        highs = [_bound_ref(by_name[k], f"hi_{i}") for i, k in enumerate(key)]
        conditions.append(_range_condition(key_refs, highs, "<", "<="))
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


def count_statement(schema_name: str | None, table: str) -> MssqlSelect:
    """The table's row count, the table named as `select_statement` names it (SQLAlchemy's own
    statement reads a schema named 'sales.eu' as database 'sales', schema 'eu')."""
    def render(quote: Quote) -> str:
        return f"SELECT COUNT_BIG(*)\nFROM {_table_name(schema_name, table, quote)}"
    return MssqlSelect(sql=render(quote_mssql), escaped_sql=render(quote_mssql_escaped))
