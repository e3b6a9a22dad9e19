"""Named data checks over a loaded table, each computed by BigQuery and returned as a typed result.

=====================  ==========================================================================
check                  passes when
=====================  ==========================================================================
``row_count``          BigQuery holds the snapshot's row count (± ``row_count_tolerance``)
``key_unique``         no key occurs twice (a keyless table: skipped, said so in the result; its
                       identical rows are replicated by number of copies and are not an error)
``key_not_null``       no key column is NULL (a keyless table: skipped likewise)
``not_null:<col>``     a source NOT NULL column holds no NULL
``max_length:<col>``   no string is longer (in code points) than the source column's declared
                       length; SQL Server counts UTF-16 units (nvarchar) or bytes (varchar), so
                       this is the part of the limit BigQuery can check
``decimal:<col>``      every value fits the source's DECIMAL(p, s): at most p - s integer digits
                       and no digit beyond s
``range:<col>``        integers within the source type, as the source enforces it (SQL Server's
                       tinyint 0-255, smallint, int; MySQL's signed and unsigned integers;
                       PostgreSQL's smallint and integer); dates within the source type (SQL
                       Server datetime from 1753, smalldatetime 1900-2079) and the table's
                       ``date_min``/``date_max``. SQLite enforces no declared type, so only the
                       thresholds apply. BigQuery's own range (years 1-9999) holds for every
                       stored value, so it needs no check
``schema_drift``       the BigQuery table has exactly the snapshot's columns with compatible
                       types (lossless widenings INT64 -> NUMERIC -> BIGNUMERIC allowed); extra
                       columns are a warning with ``allow_extra_columns``
``freshness``          the last applied load is younger than ``freshness_max_age_s``
``quarantined_rows``   at most ``max_quarantined_rows`` rows were left out of the snapshot
=====================  ==========================================================================

One profile query computes every per-column count in a single scan, and the duplicated keys in a
subquery of it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from shared import bigquery as bq
from shared import bq_jobs, ledger
from shared.identifiers import quote_bigquery as q
from shared.manifest import Manifest
from shared.schema import HASH_COLUMNS, Column
from shared.validator.thresholds import Thresholds

ERROR, WARNING = "error", "warning"
_INT16, _INT32 = (-(2**15), 2**15 - 1), (-(2**31), 2**31 - 1)
_MYSQL_INTS = {"tinyint": (-128, 127), "smallint": _INT16, "mediumint": (-(2**23), 2**23 - 1), "int": _INT32,
               "integer": _INT32}
# The limits each kind of source enforces on its own types (manifest.source_dialect; absent: mssql).
_INT_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "mssql": {"tinyint": (0, 255), "smallint": _INT16, "int": _INT32},
    "mysql": _MYSQL_INTS,
    "mariadb": _MYSQL_INTS,
    "postgresql": {"smallint": _INT16, "integer": _INT32},
}
_DATE_RANGES: dict[str, dict[str, tuple[dt.date, dt.date]]] = {
    "mssql": {"smalldatetime": (dt.date(1900, 1, 1), dt.date(2079, 6, 6)),
              "datetime": (dt.date(1753, 1, 1), dt.date(9999, 12, 31))},
}
_NUMERIC_DIGITS = {"NUMERIC": (29, 9), "BIGNUMERIC": (38, 38)}
_WIDENINGS = {("INT64", "NUMERIC"), ("INT64", "BIGNUMERIC"), ("NUMERIC", "BIGNUMERIC")}
_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "DECIMAL": "NUMERIC", "BIGDECIMAL": "BIGNUMERIC"}


@dataclass(frozen=True)
class CheckResult:
    check_name: str
    passed: bool
    observed: str
    expected: str
    message: str = ""
    severity: str = ERROR


@dataclass(frozen=True)
class _Probe:
    """Expressions of the profile query and how their values become a result."""

    name: str
    sql: dict[str, str]
    result: Callable[[dict[str, object]], CheckResult]


def _type(name: str) -> str:
    return _ALIASES.get(name.upper(), name.upper())


def _first_word(source_type: str) -> str:
    return source_type.strip().lower().split("(")[0].split()[0] if source_type.strip() else ""


def _count_result(name: str, count_alias: str, expected: str = "0 row(s)") -> Callable[[dict[str, object]], CheckResult]:
    def result(values: dict[str, object]) -> CheckResult:
        count = int(values[count_alias] or 0)  # type: ignore[call-overload]
        return CheckResult(name, count == 0, f"{count} row(s)", expected)
    return result


def _not_null_probes(columns: list[Column]) -> list[_Probe]:
    return [_Probe(f"not_null:{c.name}", {f"nulls_{i}": f"COUNTIF({q(c.bq_name)} IS NULL)"},
                   _count_result(f"not_null:{c.name}", f"nulls_{i}")) for i, c in enumerate(columns)]


def _length_probe(i: int, column: Column) -> _Probe | None:
    if column.bq_type.upper() != "STRING" or not column.length or column.length <= 0:
        return None
    name, col = f"max_length:{column.name}", q(column.bq_name)

    def result(values: dict[str, object]) -> CheckResult:
        count, longest = int(values[f"long_{i}"] or 0), values[f"longest_{i}"]  # type: ignore[call-overload]
        return CheckResult(name, count == 0, f"{count} row(s) longer; longest {longest}",
                           f"at most {column.length} characters")
    return _Probe(name, {f"long_{i}": f"COUNTIF(CHAR_LENGTH({col}) > {column.length})",
                         f"longest_{i}": f"MAX(CHAR_LENGTH({col}))"}, result)


def _decimal_probe(i: int, column: Column) -> _Probe | None:
    bq_type = column.bq_type.upper()
    if bq_type not in _NUMERIC_DIGITS or column.precision is None:
        return None
    scale = column.scale or 0
    max_integer, max_scale = _NUMERIC_DIGITS[bq_type]
    col, conditions = q(column.bq_name), []
    if column.precision - scale < max_integer:
        conditions.append(f"ABS({col}) >= {bq_type} '1{'0' * (column.precision - scale)}'")
    if scale < max_scale:
        # TRUNC, not ROUND: the same test, it cannot overflow at the type's limit, and DuckDB (the
        # local emulator) computes it faster.
        conditions.append(f"{col} != TRUNC({col}, {scale})")
    if not conditions:
        return None
    name = f"decimal:{column.name}"
    return _Probe(name, {f"dec_{i}": f"COUNTIF({' OR '.join(conditions)})"},
                  _count_result(name, f"dec_{i}", f"fits DECIMAL({column.precision},{scale})"))


def _bounds(column: Column, dialect: str, thresholds: Thresholds) -> tuple[object, object] | None:
    bq_type, word = column.bq_type.upper(), _first_word(column.source_type)
    int_ranges = _INT_RANGES.get(dialect, {})
    if bq_type == "INT64" and word in int_ranges:
        low, high = int_ranges[word]
        if "unsigned" in column.source_type.lower() and low < 0:
            low, high = 0, 2 * high + 1
        return low, high
    if bq_type in ("DATE", "DATETIME", "TIMESTAMP"):
        first, last = _DATE_RANGES.get(dialect, {}).get(word, (None, None))
        if thresholds.date_min and (first is None or thresholds.date_min > first):
            first = thresholds.date_min
        if thresholds.date_max and (last is None or thresholds.date_max < last):
            last = thresholds.date_max
        if first is None and last is None:
            return None
        return first, last
    return None


def _literal(bq_type: str, value: object, upper: bool) -> str:
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, dt.date)
    if bq_type == "DATE":
        return f"DATE '{value.isoformat()}'"
    moment = f"{value.isoformat()} {'23:59:59.999999' if upper else '00:00:00'}"
    return f"{bq_type} '{moment}{'+00' if bq_type == 'TIMESTAMP' else ''}'"


def _range_probe(i: int, column: Column, dialect: str, thresholds: Thresholds) -> _Probe | None:
    bounds = _bounds(column, dialect, thresholds)
    if bounds is None:
        return None
    low, high = bounds
    bq_type, col = column.bq_type.upper(), q(column.bq_name)
    conditions = ([f"{col} < {_literal(bq_type, low, False)}"] if low is not None else []) + (
        [f"{col} > {_literal(bq_type, high, True)}"] if high is not None else [])
    name = f"range:{column.name}"

    def result(values: dict[str, object]) -> CheckResult:
        count = int(values[f"out_{i}"] or 0)  # type: ignore[call-overload]
        return CheckResult(name, count == 0, f"{count} row(s) outside; seen {values[f'min_{i}']} .. {values[f'max_{i}']}",
                           f"{low if low is not None else '-'} .. {high if high is not None else '-'}")
    return _Probe(name, {f"out_{i}": f"COUNTIF({' OR '.join(conditions)})", f"min_{i}": f"MIN({col})",
                         f"max_{i}": f"MAX({col})"}, result)


def _key_unique_probe(manifest: Manifest) -> _Probe:
    """Keys that occur more than once, as a subquery of the profile query (one job, not two)."""
    keys = ", ".join(q(c.bq_name) for c in manifest.table_schema.key_columns)
    table = q(*manifest.target.table_id.split("."))

    def result(values: dict[str, object]) -> CheckResult:
        duplicates = int(values["duplicate_keys"] or 0)  # type: ignore[call-overload]
        return CheckResult("key_unique", duplicates == 0, f"{duplicates} duplicated key(s)", "0")
    return _Probe("key_unique", {"duplicate_keys": f"(SELECT COUNT(*) FROM (SELECT {keys} FROM {table} "
                                                   f"GROUP BY {keys} HAVING COUNT(*) > 1))"}, result)


def _probes(manifest: Manifest, thresholds: Thresholds) -> list[_Probe]:
    schema = manifest.table_schema
    keys = [q(c.bq_name) for c in schema.key_columns]
    tolerance = thresholds.row_count_tolerance

    def row_count(values: dict[str, object]) -> CheckResult:
        count = int(values["row_count"] or 0)  # type: ignore[call-overload]
        expected = f"{manifest.row_count}" + (f" ± {tolerance}" if tolerance else "")
        return CheckResult("row_count", abs(count - manifest.row_count) <= tolerance, str(count), expected)

    probes = [_Probe("row_count", {"row_count": "COUNT(*)"}, row_count)]
    if keys:
        probes.append(_key_unique_probe(manifest))
        probes.append(_Probe("key_not_null", {"key_nulls": f"COUNTIF({' OR '.join(f'{k} IS NULL' for k in keys)})"},
                             _count_result("key_not_null", "key_nulls")))
    probes += _not_null_probes([c for c in schema.columns if not c.nullable and c.name not in schema.key])
    dialect = manifest.source_dialect or "mssql"
    for i, column in enumerate(schema.columns):
        found = [_length_probe(i, column) if thresholds.check_lengths else None, _decimal_probe(i, column),
                 _range_probe(i, column, dialect, thresholds)]
        probes += [p for p in found if p is not None]
    return [p for p in probes if not thresholds.skipped(p.name)]


def _profile(manifest: Manifest, probes: list[_Probe], stats: bq_jobs.JobStats | None) -> list[CheckResult]:
    if not probes:  # every check the query would make is skipped
        return []
    expressions = ", ".join(f"{sql} AS {alias}" for p in probes for alias, sql in p.sql.items())
    table = q(*manifest.target.table_id.split("."))
    values = dict(bq_jobs.run(manifest.target.project, f"SELECT {expressions} FROM {table}", stats=stats)[0].items())
    return [p.result(values) for p in probes]


def _keyless(check_name: str) -> CheckResult:
    return CheckResult(check_name, True, "skipped: keyless table", "no key to check",
                       "the table has no key: rows are matched by row hash, identical rows by their number of copies")


def schema_drift(manifest: Manifest, thresholds: Thresholds) -> CheckResult:
    table = bq.get_table(manifest.target.table_id)
    if table is None:
        return CheckResult("schema_drift", False, "table does not exist", "the snapshot's columns")
    have = {f.name.lower(): _type(f.field_type) for f in table.schema}
    wanted = {c.bq_name.lower(): _type(c.bq_type) for c in manifest.table_schema.columns}
    wanted |= {name: "STRING" for name in HASH_COLUMNS}
    missing = sorted(name for name in wanted if name not in have)
    retyped = sorted(f"{n} {wanted[n]}->{have[n]}" for n in wanted
                     if n in have and have[n] != wanted[n] and (wanted[n], have[n]) not in _WIDENINGS)
    extra = sorted(name for name in have if name not in wanted)
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
        [f"type: {', '.join(retyped)}"] if retyped else []) + ([f"extra: {', '.join(extra)}"] if extra else [])
    failed = bool(missing or retyped or (extra and not thresholds.allow_extra_columns))
    severity = WARNING if extra and not failed else ERROR
    return CheckResult("schema_drift", not failed, "; ".join(problems) or "none", "the snapshot's columns and types",
                       "extra columns allowed" if severity == WARNING else "", severity)


def freshness(manifest: Manifest, thresholds: Thresholds, now: dt.datetime) -> CheckResult:
    target = manifest.target
    latest = ledger.latest_applied(target.project, target.dataset, target.table_id)
    expected = f"at most {thresholds.freshness_max_age_s} s"
    if latest is None or latest.get("recorded_at") is None:
        return CheckResult("freshness", False, "never loaded", expected)
    age = (now - latest["recorded_at"]).total_seconds()  # type: ignore[operator]
    return CheckResult("freshness", age <= thresholds.freshness_max_age_s, f"{age:.0f} s since the last load",
                       expected, f"last applied run {latest['run_id']}")


def quarantine(manifest: Manifest, thresholds: Thresholds) -> CheckResult:
    rows = manifest.quarantine.rows
    return CheckResult("quarantined_rows", rows <= thresholds.max_quarantined_rows, str(rows),
                       f"at most {thresholds.max_quarantined_rows}", "; ".join(manifest.quarantine.uris)[:1000])


def run_checks(manifest: Manifest, thresholds: Thresholds | None = None, *, now: dt.datetime | None = None,
               stats: bq_jobs.JobStats | None = None) -> list[CheckResult]:
    """Every named check of the table the manifest was loaded into, in a fixed order."""
    thresholds = thresholds or Thresholds()
    now = now or dt.datetime.now(dt.UTC)
    checks = _profile(manifest, _probes(manifest, thresholds), stats)
    keyless = manifest.table_schema.keyless
    extra: list[tuple[str, Callable[[], CheckResult]]] = [
        *([("key_unique", lambda: _keyless("key_unique")), ("key_not_null", lambda: _keyless("key_not_null"))]
          if keyless else []),
        ("schema_drift", lambda: schema_drift(manifest, thresholds)),
        ("freshness", lambda: freshness(manifest, thresholds, now)),
        ("quarantined_rows", lambda: quarantine(manifest, thresholds)),
    ]
    checks += [check() for name, check in extra if not thresholds.skipped(name)]
    order = {"row_count": 0, "key_unique": 1, "key_not_null": 2}
    return sorted(checks, key=lambda c: order.get(c.check_name, 3))
