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
                       columns are a warning with ``allow_extra_columns``; a missing table fails
                       it ("table does not exist")
``freshness``          the last applied load is younger than ``freshness_max_age_s``
``quarantined_rows``   at most ``max_quarantined_rows`` rows were left out of the snapshot
``all_skipped``        recorded only when the thresholds skip every check, so the run still shows
                       as validated
=====================  ==========================================================================

One profile query computes every per-column count in a single scan, and the duplicated keys in a
subquery of it. The table's columns are read first (`shared.validator.live_schema`): a check whose
column is missing or retyped in BigQuery, or whose table is gone, is skipped with the reason (it
passes; ``schema_drift`` fails), and the query reads only the columns that are there. A profile query
BigQuery still refuses (400, 404) fails its checks with the error, so the result is recorded rather
than retried forever.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from google.api_core import exceptions as gexc

from shared import bq_jobs, ledger
from shared.identifiers import quote_bigquery as q
from shared.loaded_event import is_latest_of, latest_applied_column, latest_applied_of
from shared.manifest import Manifest
from shared.schema import Column
from shared.type_ranges import date_range, integer_range
from shared.validator.live_schema import LiveSchema, read_live_schema
from shared.validator.thresholds import Thresholds

ERROR, WARNING = "error", "warning"
_NUMERIC_DIGITS = {"NUMERIC": (29, 9), "BIGNUMERIC": (38, 38)}
ALL_SKIPPED = "all_skipped"  # the one result of a run whose every check is skipped by the thresholds
Latest = Mapping[str, object] | None  # the ledger's newest applied row of the table (run_id, recorded_at)


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
    columns: tuple[Column, ...] = ()  # the columns the expressions read


@dataclass
class _LedgerRow:
    """The ledger's newest applied row, once the profile query (asked to read it too) has read it."""

    read: bool = False
    latest: Latest = None


def _count_result(name: str, count_alias: str, expected: str = "0 row(s)") -> Callable[[dict[str, object]], CheckResult]:
    def result(values: dict[str, object]) -> CheckResult:
        count = int(values[count_alias] or 0)  # type: ignore[call-overload]
        return CheckResult(name, count == 0, f"{count} row(s)", expected)
    return result


def _not_null_probes(columns: list[Column]) -> list[_Probe]:
    return [_Probe(f"not_null:{c.name}", {f"nulls_{i}": f"COUNTIF({q(c.bq_name)} IS NULL)"},
                   _count_result(f"not_null:{c.name}", f"nulls_{i}"), (c,)) for i, c in enumerate(columns)]


def _length_probe(i: int, column: Column) -> _Probe | None:
    if column.bq_type.upper() != "STRING" or not column.length or column.length <= 0:
        return None
    name, col = f"max_length:{column.name}", q(column.bq_name)

    def result(values: dict[str, object]) -> CheckResult:
        count, longest = int(values[f"long_{i}"] or 0), values[f"longest_{i}"]  # type: ignore[call-overload]
        return CheckResult(name, count == 0, f"{count} row(s) longer; longest {longest}",
                           f"at most {column.length} characters")
    return _Probe(name, {f"long_{i}": f"COUNTIF(CHAR_LENGTH({col}) > {column.length})",
                         f"longest_{i}": f"MAX(CHAR_LENGTH({col}))"}, result, (column,))


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
                  _count_result(name, f"dec_{i}", f"fits DECIMAL({column.precision},{scale})"), (column,))


def _bounds(column: Column, dialect: str, thresholds: Thresholds) -> tuple[object, object] | None:
    bq_type = column.bq_type.upper()
    if bq_type == "INT64":
        return integer_range(column.source_type, dialect)
    if bq_type in ("DATE", "DATETIME", "TIMESTAMP"):
        first, last = date_range(column.source_type, dialect) or (None, None)
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
                         f"max_{i}": f"MAX({col})"}, result, (column,))


def _key_unique_probe(manifest: Manifest) -> _Probe:
    """Keys that occur more than once, as a subquery of the profile query (one job, not two)."""
    keys = ", ".join(q(c.bq_name) for c in manifest.table_schema.key_columns)
    table = q(*manifest.target.table_id.split("."))

    def result(values: dict[str, object]) -> CheckResult:
        duplicates = int(values["duplicate_keys"] or 0)  # type: ignore[call-overload]
        return CheckResult("key_unique", duplicates == 0, f"{duplicates} duplicated key(s)", "0")
    return _Probe("key_unique", {"duplicate_keys": f"(SELECT COUNT(*) FROM (SELECT {keys} FROM {table} "
                                                   f"GROUP BY {keys} HAVING COUNT(*) > 1))"}, result,
                  tuple(manifest.table_schema.key_columns))


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
                             _count_result("key_not_null", "key_nulls"), tuple(schema.key_columns)))
    probes += _not_null_probes([c for c in schema.columns if not c.nullable and c.name not in schema.key])
    dialect = manifest.source_dialect or "mssql"
    for i, column in enumerate(schema.columns):
        found = [_length_probe(i, column) if thresholds.check_lengths else None, _decimal_probe(i, column),
                 _range_probe(i, column, dialect, thresholds)]
        probes += [p for p in found if p is not None]
    return [p for p in probes if not thresholds.skipped(p.name)]


def _skipped(probe: _Probe, reason: str) -> CheckResult:
    return CheckResult(probe.name, True, f"skipped: {reason}", "a table holding the column(s) to check",
                       "see schema_drift")


def _unreadable(probe: _Probe, live: LiveSchema) -> str | None:
    """Why the probe cannot run on the table as it is now (a column gone or retyped); None if it can."""
    return next((reason for c in probe.columns if (reason := live.why_unreadable(c)) is not None), None)


def _query_failed(probe: _Probe, error: gexc.GoogleAPICallError) -> CheckResult:
    return CheckResult(probe.name, False, "not checked: BigQuery refused the profile query",
                       "a table the profile query can read", str(error.message or error)[:1000])


def _query_profile(manifest: Manifest, probes: list[_Probe], stats: bq_jobs.JobStats | None,
                   ledger_row: _LedgerRow | None = None) -> list[CheckResult]:
    """One query for every probe (given `ledger_row`, it also reads the ledger's newest applied row
    into it, in the same statement). A query BigQuery refuses for good (the table changed between
    reading its schema and querying it) fails the probes, so the result is recorded instead of
    retried forever."""
    if not probes:
        return []
    columns, params = [f"{sql} AS {alias}" for p in probes for alias, sql in p.sql.items()], []
    if ledger_row is not None:
        latest, params = latest_applied_column(manifest.target)
        columns.append(latest)
    table = q(*manifest.target.table_id.split("."))
    try:
        rows = bq_jobs.run(manifest.target.project, f"SELECT {', '.join(columns)} FROM {table}", params, stats=stats)
    except (gexc.BadRequest, gexc.NotFound) as error:
        return [_query_failed(p, error) for p in probes]
    values = dict(rows[0].items())
    if ledger_row is not None:
        ledger_row.read, ledger_row.latest = True, latest_applied_of(values)
    return [p.result(values) for p in probes]


def _profile(manifest: Manifest, probes: list[_Probe], live: LiveSchema | None,
             stats: bq_jobs.JobStats | None, ledger_row: _LedgerRow | None = None) -> list[CheckResult]:
    """The probes' results in their order; those whose table or columns are gone are skipped, saying why."""
    if not probes:  # every check the query would make is skipped
        return []
    if live is None:
        return [_skipped(p, "table missing in BigQuery") for p in probes]
    reasons = {p.name: _unreadable(p, live) for p in probes}
    measured = _query_profile(manifest, [p for p in probes if reasons[p.name] is None], stats, ledger_row)
    by_name = {c.check_name: c for c in measured}
    return [by_name[p.name] if reasons[p.name] is None else _skipped(p, str(reasons[p.name])) for p in probes]


def _keyless(check_name: str) -> CheckResult:
    return CheckResult(check_name, True, "skipped: keyless table", "no key to check",
                       "the table has no key: rows are matched by row hash, identical rows by their number of copies")


def schema_drift(manifest: Manifest, thresholds: Thresholds, live: LiveSchema | None) -> CheckResult:
    """The table's columns now (`live`; None: the table does not exist) against the snapshot's."""
    expected = "the snapshot's columns and types"
    if live is None:
        return CheckResult("schema_drift", False, "table does not exist", expected,
                           f"{manifest.target.table_id} is missing in BigQuery")
    drift = live.drift(manifest.table_schema.columns)
    problems = ([f"missing: {', '.join(drift.missing)}"] if drift.missing else []) + (
        [f"type: {', '.join(drift.retyped)}"] if drift.retyped else []) + (
        [f"extra: {', '.join(drift.extra)}"] if drift.extra else [])
    failed = bool(drift.missing or drift.retyped or (drift.extra and not thresholds.allow_extra_columns))
    severity = WARNING if drift.extra and not failed else ERROR
    return CheckResult("schema_drift", not failed, "; ".join(problems) or "none", expected,
                       "extra columns allowed" if severity == WARNING else "", severity)


def freshness(thresholds: Thresholds, now: dt.datetime, latest: Latest) -> CheckResult:
    """`latest`: the ledger's newest applied row as `run_checks` read it once, not read again here: a
    row read earlier is at most as new, so the age is at least the true one and never too young."""
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


def superseded_result() -> CheckResult:
    """The one result of a run whose table already holds a newer applied snapshot."""
    return CheckResult("superseded", True, "newer snapshot applied", "", "checks skipped")


def _all_skipped(thresholds: Thresholds) -> CheckResult:
    """The result recorded when the thresholds skip every check, so the run still shows as validated."""
    return CheckResult(ALL_SKIPPED, True, "skipped: every check", "checks to run",
                       f"every check is in the table's skip list: {', '.join(thresholds.skip)}"[:1000])


def _latest(manifest: Manifest, ledger_row: _LedgerRow) -> Latest:
    """The ledger's newest applied row: the one the profile query read, or (no profile query ran, or
    BigQuery refused it) one read now."""
    if ledger_row.read:
        return ledger_row.latest
    target = manifest.target
    return ledger.latest_applied(target.project, target.dataset, target.table_id, since_truncate=True)


def run_checks(manifest: Manifest, thresholds: Thresholds | None = None, *, now: dt.datetime | None = None,
               stats: bq_jobs.JobStats | None = None, only_if_latest: bool = False) -> list[CheckResult]:
    """Every named check of the table the manifest was loaded into, in a fixed order. The table's
    columns are read first: a missing table or column fails `schema_drift` and skips the checks that
    need it, the others still run. At least one result, even when the thresholds skip every check.

    The ledger's newest applied row (for `freshness`, and for `only_if_latest`) is read once, in the
    profile query when there is one. `only_if_latest`: when it names a newer run than the manifest's,
    the one result is `superseded` (the table no longer holds this snapshot, so nothing is checked)."""
    thresholds = thresholds or Thresholds()
    now = now or dt.datetime.now(dt.UTC)
    probes = _probes(manifest, thresholds)
    needs_table = bool(probes) or not thresholds.skipped("schema_drift")
    live = read_live_schema(manifest.target.table_id) if needs_table else None
    ledger_row = _LedgerRow() if only_if_latest or not thresholds.skipped("freshness") else None
    checks = _profile(manifest, probes, live, stats, ledger_row)
    latest = _latest(manifest, ledger_row) if ledger_row is not None else None
    if only_if_latest and not is_latest_of(manifest, latest):
        return [superseded_result()]
    keyless = manifest.table_schema.keyless
    extra: list[tuple[str, Callable[[], CheckResult]]] = [
        *([("key_unique", lambda: _keyless("key_unique")), ("key_not_null", lambda: _keyless("key_not_null"))]
          if keyless else []),
        ("schema_drift", lambda: schema_drift(manifest, thresholds, live)),
        ("freshness", lambda: freshness(thresholds, now, latest)),
        ("quarantined_rows", lambda: quarantine(manifest, thresholds)),
    ]
    checks += [check() for name, check in extra if not thresholds.skipped(name)]
    if not checks:
        return [_all_skipped(thresholds)]
    order = {"row_count": 0, "key_unique": 1, "key_not_null": 2}
    return sorted(checks, key=lambda c: order.get(c.check_name, 3))
