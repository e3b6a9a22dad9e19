"""What the operator tools compute and show: tables of differences, checks and verdicts, typed key
filters for `delete`, and the ledger entries operator actions leave."""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery
from rich.table import Table

from matrix_sync import compare as cmp
from matrix_sync.reconcile_view import recreate_hint
from shared import bigquery as bq
from shared import bq_jobs, ledger, results
from shared.applied import SnapshotGone, latest_snapshot
from shared.config import Config, TableConfig
from shared.extractor import outcomes
from shared.extractor.snapshot import new_run_id
from shared.identifiers import IdentifierError, bigquery_column_for
from shared.identifiers import quote_bigquery as q
from shared.topology import LEDGER_TABLE
from shared.validator.checks import CheckResult, run_checks
from shared.validator.handler import result_rows
from shared.validator.thresholds import ENV_VARIABLE, thresholds_for

MAX_SHOWN = 50


class OperatorError(RuntimeError):
    """A request the operator tools refuse; the message says why."""


# --- compare-keys -------------------------------------------------------------------------------


def comparison_table(found: list[cmp.TableComparison], title: str) -> Table:
    stored = [r.table for r in found if r.stored_only]
    shallow = [r.table for r in found if not r.deep and not r.stored_only]
    if stored:
        title += f" (stored hash columns only for {', '.join(stored)}: --stored-hashes)"
    if shallow:
        title += (f" (stored hashes only for {', '.join(shallow)}: a GEOGRAPHY or JSON column, or too many "
                  "FLOAT64 columns for one BigQuery query, so its hashes cannot be rebuilt there)")
    table = Table(title=title, title_justify="left")
    for heading in ("table", "source", "bigquery", "missing", "extra", "changed", "duplicate", "stale hash",
                    "segments", "seconds", "rows/s"):
        table.add_column(heading, justify="left" if heading == "table" else "right")
    for r in found:
        counts = [r.count(kind) for kind in (cmp.MISSING, cmp.EXTRA, cmp.CHANGED, cmp.DUPLICATE, cmp.STALE_HASH)]
        name = f"{r.table} ({r.unconvertible_rows:,} unconvertible)" if r.unconvertible_rows else r.table
        table.add_row(name, f"{r.source_rows:,}", f"{r.target_rows:,}", *(f"{n:,}" for n in counts),
                      f"{r.segments_compared:,}", f"{r.seconds:.1f}", f"{cmp.rows_per_second(r):,.0f}",
                      style="" if r.clean else "bold red")
    return table


def differences_table(result: cmp.TableComparison) -> Table:
    table = Table(title=f"differing keys of {result.table} ({len(result.differences):,})", title_justify="left")
    for heading in ("kind", "key", "detail"):
        table.add_column(heading)
    for difference in result.differences.shown(MAX_SHOWN):
        table.add_row(difference.kind, cmp.describe_key(result, difference.key), difference.detail)
    if len(result.differences) > MAX_SHOWN:
        table.add_row("...", f"and {len(result.differences) - MAX_SHOWN:,} more", "")
    return table


def write_differences(results: list[cmp.TableComparison], path: Path) -> int:
    """Every differing key of every table as CSV, in the order shown (the screen shows MAX_SHOWN a
    table); `key_values` is a JSON object of canonical texts, one per key column. Returns the rows written."""
    written = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        out = csv.writer(stream)
        out.writerow(["table", "kind", "key", "key_values", "key_hash", "detail"])
        for result in results:
            for difference in result.differences:
                values = json.dumps(dict(zip(result.key_columns, difference.key, strict=True)), ensure_ascii=False)
                out.writerow([result.table, difference.kind, cmp.describe_key(result, difference.key), values,
                              difference.key_hash, difference.detail])
                written += 1
    return written


# --- delete / truncate --------------------------------------------------------------------------


_NUMBER_KINDS = ("INT64", "INTEGER", "NUMERIC", "BIGNUMERIC", "FLOAT64", "FLOAT")


def _typed(bq_type: str, text: str) -> object:
    kind = bq_type.upper()
    if kind in _NUMBER_KINDS and (not text.isascii() or "_" in text):  # Python reads '2_0' and '٢٠' as 20
        raise OperatorError(f"{text!r} is not a valid {kind} value")
    try:
        if kind in ("INT64", "INTEGER"):
            number = int(text)
            if not -2**63 <= number < 2**63:
                raise ValueError(text)  # BigQuery would take it as some other number, or none
            return number
        if kind in ("NUMERIC", "BIGNUMERIC"):
            return decimal.Decimal(text)
        if kind in ("FLOAT64", "FLOAT"):
            return float(text)
        if kind in ("BOOL", "BOOLEAN"):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "DATE":
            return dt.date.fromisoformat(text)
        if kind == "DATETIME":
            return dt.datetime.fromisoformat(text)
        if kind == "TIMESTAMP":
            value = dt.datetime.fromisoformat(text)
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if kind == "BYTES":
            return bytes.fromhex(text)
    except (ValueError, decimal.InvalidOperation):
        raise OperatorError(f"{text!r} is not a valid {kind} value") from None
    return text


def parse_key_filters(table_id: str, filters: tuple[str, ...]) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    """`COLUMN=VALUE` pairs as a typed, parameterised condition on the BigQuery table's columns."""
    table = bq.get_table(table_id)
    if table is None:
        raise OperatorError(f"{table_id} does not exist")
    types = {f.name.lower(): (f.name, f.field_type) for f in table.schema}
    conditions, params, seen = [], [], set()
    for i, item in enumerate(filters):
        name, sep, text = item.partition("=")
        column = types.get(name.strip().lower()) or types.get(_bigquery_spelling(name.strip()).lower())
        if not sep or column is None:
            raise OperatorError(f"--key {item!r}: expected COLUMN=VALUE with a column of {table_id} (its columns: "
                                f"{', '.join(name for name, _ in types.values())})")
        if column[0] in seen:
            raise OperatorError(f"--key names {column[0]} twice")
        seen.add(column[0])
        kind = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(column[1], column[1])
        value = _typed_for(name.strip(), kind, text)
        params.append(bigquery.ScalarQueryParameter(f"k{i}", kind, value))  # type: ignore[arg-type]
        conditions.append(f"{q(column[0])} = @k{i}")
    return " AND ".join(conditions), params


def _typed_for(column: str, bq_type: str, text: str) -> object:
    """`_typed`, its refusal naming the column as the --key gave it."""
    try:
        return _typed(bq_type, text)
    except OperatorError as error:
        raise OperatorError(f"--key {column}: {error}") from None


def _bigquery_spelling(source_name: str) -> str:
    """The BigQuery column a source column name lands in (`Order Date` -> `Order_x0020_Date`), or ''."""
    try:
        return bigquery_column_for(source_name)
    except IdentifierError:
        return ""


def described(params: Sequence[bigquery.ScalarQueryParameter]) -> str:
    """The values of a condition's parameters, for the ledger: ' (@k0 = 3, @k1 = 'A1')', or ''."""
    shown = [f"@{p.name} = {p.value!r}" if isinstance(p.value, str) else f"@{p.name} = {p.value}" for p in params]
    return f" ({', '.join(shown)})" if shown else ""


def record_operator_action(config: Config, source_table: str, table_id: str, status: str, rows: int,
                           message: str) -> str:
    """A ledger row for an operator's change to a table; returns its run id."""
    run_id = f"operator-{new_run_id()}"
    row = {"table_id": table_id, "source_table": source_table, "run_id": run_id, "status": status,
           "rows_deleted": rows, "recorded_at": dt.datetime.now(dt.UTC),
           "message": f"{message} (by {os.environ.get('USER', 'unknown')})"[:1000]}
    ledger.record_once(config.bigquery.project, config.bigquery.dataset, row)
    return run_id


# --- validate -----------------------------------------------------------------------------------


def _table_checks(project: str, dataset: str, table: TableConfig, *, record: bool, stats: bq_jobs.JobStats,
                  now: dt.datetime) -> list[tuple[str, ...]]:
    """Check rows of one table against its latest applied snapshot (the checks themselves, or why none ran)."""
    table_id = f"{project}.{dataset}.{table.target_table}"
    try:
        snapshot = latest_snapshot(project, dataset, table_id)
    except SnapshotGone as gone:
        return [(table.name, "snapshot", "FAILED", str(gone), "its newest applied snapshot")]
    if snapshot is None:
        return [(table.name, "loaded", "FAILED", "no applied snapshot", "one")]
    checks = run_checks(snapshot.manifest, thresholds_for(table_id, os.environ.get(ENV_VARIABLE)), now=now,
                        stats=stats)
    if record:
        results.write(project, dataset, results.VALIDATION_TABLE, result_rows(snapshot.manifest, checks, now))
    return [(table.name, c.check_name, _verdict(c), c.observed, c.expected) for c in checks]


def validation_rows(config: Config, tables: list[TableConfig], *, record: bool, stats: bq_jobs.JobStats,
                    on_table: Callable[[str], None]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Check rows for the table display and the names of failed tables. A table whose validation
    fails unexpectedly is one failed row naming the error; the other tables are still validated."""
    project, dataset = config.bigquery.project, config.bigquery.dataset
    rows: list[tuple[str, ...]] = []
    failed: list[str] = []
    now = dt.datetime.now(dt.UTC)
    for table in tables:
        on_table(table.name)
        try:
            found = _table_checks(project, dataset, table, record=record, stats=stats, now=now)
        except GoogleAuthError:
            raise  # every table would meet it: one line for the command (no credentials, no stack)
        except Exception as error:  # noqa: BLE001 - named in the output, and the command exits 1
            found = [(table.name, "validation", "FAILED", f"error: {type(error).__name__}: {error}"[:1000],
                      "the checks to run")]
        rows += found
        if any(row[2] == "FAILED" for row in found):
            failed.append(table.name)
    return rows, failed


def _verdict(check: CheckResult) -> str:
    if not check.passed:
        return "FAILED"
    if check.observed.startswith("skipped:"):
        return "skipped"
    return "warning" if check.severity == "warning" else "passed"


# --- status -------------------------------------------------------------------------------------


def _age(moment: object, now: dt.datetime) -> str:
    if not isinstance(moment, dt.datetime):
        return "-"
    seconds = max(0.0, (now - moment).total_seconds())  # written while the command ran: just now
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


INFORMATIONAL = (ledger.STALE, ledger.DUPLICATE)  # deliveries the loader skipped: they change no table


def _last_entries(project: str, dataset: str) -> tuple[dict[str, dict[str, object]], dict[str, dict[str, object]]]:
    """Each table's newest ledger row, and its newest that says something about the table's content
    (not an `INFORMATIONAL` one, cf. ledger.latest_event), in one query."""
    informational = f"status IN ({', '.join(f"'{s}'" for s in INFORMATIONAL)})"
    rows = bq.query(project, f"SELECT *, ROW_NUMBER() OVER (PARTITION BY table_id ORDER BY recorded_at DESC) = 1 "
                             f"AS newest FROM {q(project, dataset, LEDGER_TABLE)} QUALIFY newest OR ROW_NUMBER() "
                             f"OVER (PARTITION BY table_id, {informational} ORDER BY recorded_at DESC) = 1 "
                             f"AND NOT {informational}")
    last = {str(r["table_id"]): dict(r.items()) for r in rows if r["newest"]}
    events = {str(r["table_id"]): dict(r.items()) for r in rows if r["status"] not in INFORMATIONAL}
    return last, events


def _tables_of(project: str, dataset: str) -> set[str]:
    """The ids of the dataset's tables: one listing, not a lookup per table."""
    try:
        return {f"{project}.{dataset}.{t.table_id}" for t in bq.client(project).list_tables(f"{project}.{dataset}")}
    except gexc.NotFound:
        return set()


def _by_operator(entry: dict[str, object] | None) -> bool:
    return entry is not None and str(entry["status"]).startswith(ledger.OPERATOR_STATUS_PREFIX)


def _outdated_by(entry: dict[str, object] | None) -> Callable[[object], bool]:
    """Whether a verdict checked at a moment predates the operator's delete or truncate that is the
    table's last ledger entry about its content (so it no longer describes the table)."""
    if entry is None or not _by_operator(entry):
        return lambda _moment: False
    since = entry["recorded_at"]
    return lambda moment: not isinstance(moment, dt.datetime) or not isinstance(since, dt.datetime) or moment < since


PENDING = "pending"
MISSING = "missing in BigQuery"


class StatusView(NamedTuple):
    rows: list[tuple[str, tuple[str, ...]]]  # (table name, display row)
    unhealthy: list[str]  # the names of the tables needing attention
    hints: list[str]  # a line for each table with something to do about it


def status_rows(config: Config, now: dt.datetime) -> StatusView:
    """One display row per table, the tables needing attention (never loaded, gone from BigQuery,
    last snapshot refused, its newest applied run not reconciled or validated yet or not clean,
    changed by an operator since it was last checked, older than its freshness limit, or its last
    extraction failed after the newest applied run was extracted), and what to do about a table gone.
    Stale and duplicate ledger rows are shown, but decide nothing: they changed no table."""
    project, dataset = config.bigquery.project, config.bigquery.dataset
    known = bq.get_table(f"{project}.{dataset}.{LEDGER_TABLE}") is not None
    last, events = _last_entries(project, dataset) if known else ({}, {})
    table_ids = {table.name: f"{project}.{dataset}.{table.target_table}" for table in config.tables}
    newest = {t: ledger.latest_applied(project, dataset, t) for t in table_ids.values()} if last else {}
    existing = _tables_of(project, dataset) if any(newest.values()) else set()
    # only verdicts on the newest applied run describe the table as that run left it
    runs = {t: str(row["run_id"]) for t, row in newest.items() if row}
    certificates = results.reconciliations_of(project, dataset, runs)
    validations = results.validations_of(project, dataset, runs)
    out: list[tuple[str, tuple[str, ...]]] = []
    unhealthy: list[str] = []
    hints: list[str] = []
    for table in config.tables:
        table_id = table_ids[table.name]
        applied = newest.get(table_id)
        entry = last.get(table_id)
        event = events.get(table_id)
        certificate = certificates.get(table_id)
        checks = validations.get(table_id, [])
        pending = applied is not None and (certificate is None or not checks)
        missing = applied is not None and table_id not in existing
        outdated = _outdated_by(event)
        failed = sorted({str(c["check_name"]) for c in checks if not c["passed"]})
        verdict = str(certificate["verdict"]) if certificate else PENDING if applied else "-"
        if certificate and certificate.get("message") and verdict != results.MATCH:
            verdict += f" ({str(certificate['message']).strip('; ')})"
        validation = (f"failed: {', '.join(failed)}" if failed else "passed") if checks else PENDING if applied else "-"
        unverified_change = bool(event) and outdated(certificate and certificate["checked_at"])
        if unverified_change:
            verdict = f"outdated: {verdict}" if certificate else "-"
        if checks and outdated(max(c["checked_at"] for c in checks)):
            validation = f"outdated: {validation}"
        rows = _missing_text(applied) if missing else _rows_text(applied, table_id,
                                                                 operator_changed=_by_operator(event))
        if missing:
            hints.append(f"{table.name}: {MISSING}: {recreate_hint(table_id)}")
        stale = _stale(applied, table_id, now)
        age = _age(applied and applied["recorded_at"], now) + (" (stale)" if stale else "")
        extraction = outcomes.read(config.gcs.bucket, config.gcs.prefix, table.target_table)
        extraction_failed = failed_since(extraction, applied)
        out.append((table.name, (
            table.name, str(applied["run_id"]) if applied else "never", age, rows, extraction_text(extraction, now),
            f"{entry['status']} ({_age(entry['recorded_at'], now)} ago)" if entry else "-", verdict, validation,
        )))
        refused = event is not None and event["status"] == ledger.REFUSED
        if (applied is None or missing or failed or refused or unverified_change or pending or stale
                or extraction_failed
                or (certificate and certificate["verdict"] in (results.MISMATCH, results.UNVERIFIED))):
            unhealthy.append(table.name)
    return StatusView(out, unhealthy, hints)


def _missing_text(applied: dict[str, object] | None) -> str:
    return f"{MISSING} (snapshot {int(str(applied and applied['source_rows'] or 0)):,})"


def _rows_text(applied: dict[str, object] | None, table_id: str, *, operator_changed: bool) -> str:
    """The newest applied snapshot's row count; after an operator's delete or truncate, what the
    table holds now beside it (a COUNT(*) BigQuery answers from metadata, billing no bytes)."""
    if not applied:
        return "-"
    snapshot = f"{int(str(applied['source_rows'] or 0)):,}"
    if not operator_changed:
        return snapshot
    project, dataset, table = table_id.split(".")
    try:
        held = bq.query(project, f"SELECT COUNT(*) AS n FROM {q(project, dataset, table)}")[0]["n"]
    except gexc.NotFound:
        return f"table gone (snapshot {snapshot})"
    return f"{held:,} (snapshot {snapshot})"


def _stale(applied: dict[str, object] | None, table_id: str, now: dt.datetime) -> bool:
    """Older than the table's freshness limit (MATRIX_VALIDATION): the validator checks freshness only
    when a load arrives, so a table whose extractions stopped is caught here."""
    recorded = applied and applied["recorded_at"]
    if not isinstance(recorded, dt.datetime):
        return False
    limit = thresholds_for(table_id, os.environ.get(ENV_VARIABLE)).freshness_max_age_s
    return (now - recorded).total_seconds() > limit


def failed_since(extraction: outcomes.ExtractionOutcome | None, applied: dict[str, object] | None) -> bool:
    """The table's last extraction failed after its newest applied run was extracted."""
    if extraction is None or not extraction.failed:
        return False
    extracted = applied and applied["extracted_at"]
    return not isinstance(extracted, dt.datetime) or extraction.at > extracted


def extraction_text(extraction: outcomes.ExtractionOutcome | None, now: dt.datetime) -> str:
    if extraction is None:
        return "-"
    text = f"{extraction.outcome} ({_age(extraction.at, now)} ago)"
    return f"{text}: {extraction.reason}" if extraction.failed and extraction.reason else text
