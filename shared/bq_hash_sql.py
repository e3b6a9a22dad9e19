"""`shared.hashing`'s canonical encoding rebuilt in BigQuery SQL, so hashes can be recomputed from
the data columns inside BigQuery ("deep" checks) and edits made behind the pipeline's back, which
leave `_key_hash`/`_row_hash` untouched, are caught without downloading the table.

Per BigQuery type, the expression that yields `shared.hashing.canonical_text` of a loaded value:

==========================  =================================================================
INT64                       ``CAST(x AS STRING)``
NUMERIC, BIGNUMERIC         ``CAST(x AS STRING)`` with trailing fractional zeros and a trailing
                            ``.`` removed by REGEXP_REPLACE, only when there is a ``.`` (BigQuery
                            renders 1.50 as ``1.5``, the emulator as ``1.500000000``; both give
                            ``1.5``, and ``100`` stays ``100``)
BOOL                        ``'true'`` / ``'false'``
STRING                      ``NORMALIZE(x, NFC)``, only when `x` holds a character NFC could
                            change (`shared.nfc_ranges`, one RE2 match): every other string is
                            NFC already, and NORMALIZE is what costs (a Python call a row on
                            the emulator)
BYTES                       ``TO_HEX(x)`` (lowercase)
DATE                        year zero-padded to four digits (``%Y`` alone does not pad), then
                            ``FORMAT_DATE('-%m-%d')``
DATETIME                    same year, then ``FORMAT_DATETIME('-%m-%dT%H:%M:%E6S')``
TIMESTAMP                   same in UTC, plus ``Z`` (a TIMESTAMP column is always UTC-aware)
TIME                        ``FORMAT_TIME('%H:%M:%E6S')``
FLOAT64                     Python's ``repr()`` rebuilt: the first of ``FORMAT('%.{p}e', x)``,
                            p = 0..16 (a CASE, tried in order), that casts back to exactly
                            ``x`` gives the digits and
                            exponent (plus, before 17 digits, the 16-digit string one step
                            above, which Python picks for some powers of two); they are laid
                            out in fixed notation for exponents -4..15 and as ``d.ddde±XX``
                            otherwise; ``-0.0`` is ``0``, ``NaN``, ``Infinity``, ``-Infinity``.
                            Rule guaranteed: equal to Python for every double except a power of
                            two whose shortest repr has 15 digits or fewer but is not the
                            correctly rounded one (none seen among all 2**-1074..2**1023 and
                            20,000 random bit patterns, see tests). Such a value would show up
                            as a changed row: a false alarm, never a missed difference.
GEOGRAPHY, JSON             not rebuildable (BigQuery normalises them on load): `DeepHashError`
==========================  =================================================================

Each text is framed as in `shared.hashing` (NULL as ``~``, else ``<code points>:<text>``), the
frames are concatenated in column order, hashed with SHA256, hex-encoded and cut to 32
characters. The query is built in layers of nested SELECTs: float digits, then per-column texts,
then the hashes. DuckDB (the emulator) inlines those layers, so every reference to a text is
evaluated again: each text is referenced as few times as possible (a frame uses it twice, its
NULL handled by IFNULL around the NULL-propagating CONCAT).
"""
from __future__ import annotations

from shared.identifiers import quote_bigquery as q
from shared.nfc_ranges import re2_class
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, Column, TableSchema

DEEP_KEY_HASH = "_deep_key_hash"
DEEP_ROW_HASH = "_deep_row_hash"
_FLOAT_MAX_PRECISION = 16  # %.16e is 17 significant digits: enough for every double
UNSUPPORTED_TYPES = ("GEOGRAPHY", "JSON")
# BigQuery refuses a query text past 1,024K characters; the callers wrap this one in a few hundred more.
MAX_QUERY_CHARS = 1_000_000


class DeepHashError(ValueError):
    """A table whose values cannot be rebuilt into canonical texts inside BigQuery."""


def unsupported_columns(schema: TableSchema) -> list[str]:
    return [c.name for c in schema.columns if c.bq_type.upper() in UNSUPPORTED_TYPES]


def deep_hash_unavailable(schema: TableSchema) -> str | None:
    """Why the table's hashes cannot be rebuilt inside BigQuery; None when they can."""
    try:
        deep_hash_query(schema, "`t`")
    except DeepHashError as error:
        return str(error)
    return None


def _year(expr: str) -> str:
    return f"LPAD(CAST(EXTRACT(YEAR FROM {expr}) AS STRING), 4, '0')"


def _numeric_text(expr: str) -> str:
    text = f"CAST({expr} AS STRING)"
    return f"IF(STRPOS({text}, '.') > 0, REGEXP_REPLACE({text}, r'\\.?0+$', ''), {text})"


def _sixteen_digits_up(expr: str) -> str:
    """``FORMAT('%.15e', x)`` with its last digit raised by one (in magnitude): the 16-digit
    candidate Python's repr picks for some powers of two, whose round-trip interval reaches twice as
    far above as below, when the correctly rounded 16 digits fall just below the interval."""
    near = f"FORMAT('%.15e', {expr})"
    digits = f"CAST(CAST(REPLACE(REGEXP_EXTRACT({near}, r'^-?([0-9.]+)e'), '.', '') AS INT64) + 1 AS STRING)"
    return (f"CONCAT(IF({expr} < 0, '-', ''), SUBSTR({digits}, 1, 1), '.', SUBSTR({digits}, 2), "
            f"REGEXP_EXTRACT({near}, r'(e[-+][0-9]+)$'))")


def float_scientific_sql(expr: str) -> str:
    """The shortest ``%.{p}e`` rendering of `expr` that reads back as the same double: a CASE
    tried in order, not a correlated subquery (which DuckDB runs as a join per query)."""
    formats = [f"FORMAT('%.{p}e', {expr})" for p in range(_FLOAT_MAX_PRECISION + 1)]
    candidates = [*formats[:-1], _sixteen_digits_up(expr), formats[-1]]
    tries = " ".join(f"WHEN SAFE_CAST({c} AS FLOAT64) = {expr} THEN {c}" for c in candidates)
    return f"CASE {tries} END"


def float_digits_sql(scientific: str) -> str:
    """Significant digits of a ``%e`` text, without the point and trailing zeros."""
    return f"RTRIM(REPLACE(REGEXP_EXTRACT({scientific}, r'^-?([0-9.]+)e'), '.', ''), '0')"


def float_exponent_sql(scientific: str) -> str:
    return f"CAST(REGEXP_EXTRACT({scientific}, r'e\\+?(-?[0-9]+)$') AS INT64)"


def float_text_sql(expr: str, digits: str, exponent: str) -> str:
    """Python's float repr (``.0`` stripped) from the value, its digits and its exponent."""
    d, e = digits, exponent
    layout = (
        f"CASE WHEN {e} < -4 OR {e} >= 16 THEN CONCAT(SUBSTR({d}, 1, 1), "
        f"IF(LENGTH({d}) > 1, CONCAT('.', SUBSTR({d}, 2)), ''), 'e', IF({e} < 0, '-', '+'), "
        f"IF(ABS({e}) < 10, '0', ''), CAST(ABS({e}) AS STRING)) "
        f"WHEN {e} >= LENGTH({d}) - 1 THEN CONCAT({d}, REPEAT('0', {e} - LENGTH({d}) + 1)) "
        f"WHEN {e} >= 0 THEN CONCAT(SUBSTR({d}, 1, {e} + 1), '.', SUBSTR({d}, {e} + 2)) "
        f"ELSE CONCAT('0.', REPEAT('0', -{e} - 1), {d}) END"
    )
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL WHEN IS_NAN({expr}) THEN 'NaN' "
        f"WHEN IS_INF({expr}) THEN IF({expr} > 0, 'Infinity', '-Infinity') WHEN {expr} = 0 THEN '0' "
        f"ELSE CONCAT(IF({expr} < 0, '-', ''), {layout}) END"
    )


def canonical_text_sql(column: Column, expr: str) -> str:
    """A STRING expression equal to `canonical_text` of the column's value, NULL for NULL.

    FLOAT64 needs its digits and exponent computed first: use `deep_hash_query`."""
    bq_type = column.bq_type.upper()
    if bq_type == "INT64":
        text = f"CAST({expr} AS STRING)"
    elif bq_type in ("NUMERIC", "BIGNUMERIC"):
        text = _numeric_text(expr)
    elif bq_type == "BOOL":
        text = f"IF({expr}, 'true', 'false')"
    elif bq_type == "STRING":
        text = f"IF(REGEXP_CONTAINS({expr}, r'{re2_class()}'), NORMALIZE({expr}, NFC), {expr})"
    elif bq_type == "BYTES":
        text = f"TO_HEX({expr})"
    elif bq_type == "DATE":
        text = f"CONCAT({_year(expr)}, FORMAT_DATE('-%m-%d', {expr}))"
    elif bq_type == "DATETIME":
        text = f"CONCAT({_year(expr)}, FORMAT_DATETIME('-%m-%dT%H:%M:%E6S', {expr}))"
    elif bq_type == "TIMESTAMP":
        text = f"CONCAT({_year(expr)}, FORMAT_TIMESTAMP('-%m-%dT%H:%M:%E6SZ', {expr}, 'UTC'))"
    elif bq_type == "TIME":
        text = f"FORMAT_TIME('%H:%M:%E6S', {expr})"
    else:
        raise DeepHashError(f"column {column.name} ({column.bq_type}) cannot be re-encoded inside BigQuery")
    return f"IF({expr} IS NULL, NULL, {text})"


def frame_sql(text: str) -> str:
    return f"IFNULL(CONCAT(CAST(CHAR_LENGTH({text}) AS STRING), ':', {text}), '~')"


def hash_sql(texts: list[str]) -> str:
    """The frames joined by ARRAY_TO_STRING, not CONCAT: the same string (a frame is never NULL), but
    a flat list at any width, where a SQL front end folding CONCAT into binary ``||`` nests a
    wide table's frames hundreds deep (the emulator's translator ran out of stack at 200 columns)."""
    frames = ", ".join(frame_sql(t) for t in texts)
    return f"SUBSTR(TO_HEX(SHA256(ARRAY_TO_STRING([{frames}], ''))), 1, 32)"


def key_hash_sql(schema: TableSchema) -> str | None:
    """The key hash rebuilt from a keyed table's key columns as one expression over the table's own
    columns; None where a key column needs more (FLOAT64, see `deep_hash_query`) or cannot be."""
    columns = schema.key_columns
    if schema.keyless or any(c.bq_type.upper() in ("FLOAT64", *UNSUPPORTED_TYPES) for c in columns):
        return None
    return hash_sql([canonical_text_sql(c, q(c.bq_name)) for c in columns])


def _prefix(schema: TableSchema) -> str:
    prefix = "_mx"
    names = [c.bq_name.lower() for c in schema.columns]
    while any(name.startswith(prefix) for name in names):
        prefix += "x"
    return prefix


def deep_hash_query(schema: TableSchema, table: str, *, extra_columns: tuple[str, ...] = ()) -> str:
    """A SELECT over `table` (a quoted identifier) returning the key columns, the stored hashes and
    the recomputed ones as `_deep_key_hash` / `_deep_row_hash`, plus `extra_columns` (quoted names).
    """
    schema = schema.hash_keyed()
    unsupported = unsupported_columns(schema)
    if unsupported:
        raise DeepHashError(f"column(s) {', '.join(unsupported)} cannot be re-encoded inside BigQuery")
    p = _prefix(schema)
    columns = schema.columns
    floats = [i for i, c in enumerate(columns) if c.bq_type.upper() == "FLOAT64"]
    source = f"SELECT * FROM {table}"
    if floats:
        sci = ", ".join(f"{float_scientific_sql(q(columns[i].bq_name))} AS {p}_s{i}" for i in floats)
        source = f"SELECT *, {sci} FROM {table}"
        parts = ", ".join(f"{float_digits_sql(f'{p}_s{i}')} AS {p}_d{i}, {float_exponent_sql(f'{p}_s{i}')} AS {p}_e{i}"
                          for i in floats)
        source = f"SELECT *, {parts} FROM ({source})"
    texts = []
    for i, column in enumerate(columns):
        if i in floats:
            texts.append(f"{float_text_sql(q(column.bq_name), f'{p}_d{i}', f'{p}_e{i}')} AS {p}_t{i}")
        else:
            texts.append(f"{canonical_text_sql(column, q(column.bq_name))} AS {p}_t{i}")
    source = f"SELECT *, {', '.join(texts)} FROM ({source})"
    key_texts = [f"{p}_t{i}" for i in schema.key_positions]
    row_texts = [f"{p}_t{i}" for i in range(len(columns))]
    keys = ", ".join(q(c.bq_name) for c in schema.key_columns)
    extra = "".join(f", {c}" for c in extra_columns)
    query = (
        f"SELECT {keys}, {q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)}{extra}, "
        f"{hash_sql(key_texts)} AS {q(DEEP_KEY_HASH)}, {hash_sql(row_texts)} AS {q(DEEP_ROW_HASH)} "
        f"FROM ({source})"
    )
    if len(query) > MAX_QUERY_CHARS:
        raise DeepHashError(f"rebuilding the hashes of {len(columns)} columns ({len(floats)} FLOAT64) takes a "
                            f"{len(query):,}-character query, past BigQuery's limit")
    return query
