"""Operator tools in the original scripts' vocabulary: `compare-keys`, `validate`, `delete`,
`truncate` and `status`.

Each prints a table, shows progress for long work, exits 1 when it finds something wrong and 2 with
one line for expected errors (bad config, unreachable source, refused request). Register them on
the `matrix-sync` group with `main.add_command(...)`; `python -m matrix_sync.operator` runs them
standalone.
"""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
from google.api_core import exceptions as gexc
from google.auth.exceptions import DefaultCredentialsError
from rich.table import Table

from matrix_sync import compare as cmp
from matrix_sync.console import console, errors, print_unwrapped, styled
from matrix_sync.environment import target_config
from matrix_sync.errors import bigquery_timeout_line, one_line_errors
from matrix_sync.operator_views import (
    MAX_SHOWN,
    OperatorError,
    comparison_table,
    described,
    differences_table,
    parse_key_filters,
    record_operator_action,
    status_rows,
    validation_rows,
    write_differences,
)
from matrix_sync.stack import StackError
from matrix_sync.where_condition import checked_condition
from shared import bigquery as bq
from shared import bq_jobs, ledger, logs
from shared.config import Config, ConfigError, load_config
from shared.extractor.source import SourceError, connect
from shared.identifiers import quote_bigquery as q
from shared.reconciler.options import OptionsError
from shared.secrets import redact
from shared.validator.thresholds import ThresholdsError

log = logs.get(__name__)
EXPECTED_ERRORS = (ConfigError, SourceError, StackError, OperatorError, cmp.CompareError, ThresholdsError,
                   OptionsError, gexc.GoogleAPIError)


expected_errors = one_line_errors(*EXPECTED_ERRORS)


def targeted_config(path: Path) -> Config:
    config = load_config(path)
    target_config(config)
    return config


CONFIG_OPTION = click.option("--config", "config_path", type=click.Path(path_type=Path), required=True,
                       help="the YAML config naming source, tables and targets")


# --- compare-keys -------------------------------------------------------------------------------


class _RichCompareProgress(cmp.CompareProgress):
    def __init__(self, bars: Any) -> None:
        self._bars = bars
        self._task: Any = None
        self._table = ""

    def started(self, table: str, rows: int | None) -> None:
        self._table = table
        self._task = self._bars.add_task(f"compare {table}", total=rows)

    def rows(self, count: int) -> None:
        self._bars.advance(self._task, count)

    def phase(self, text: str) -> None:
        self._bars.update(self._task, description=f"compare {self._table}: {text}")


def _compare_all(config: Config, tables: list[str], keep: bool,
                 stored_hashes: bool = False) -> tuple[list[cmp.TableComparison], list[str]]:
    """The comparisons, and why each table that could not be compared was not (the others still are)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    chosen = [config.table(name) for name in tables] if tables else config.tables
    engine = connect(config.source)
    results, not_compared = [], []
    try:
        with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bars:
            progress = _RichCompareProgress(bars)
            for table in chosen:
                try:
                    results.append(cmp.compare_table(config, engine, table, progress, keep_hash_table=keep,
                                                     stored_hashes=stored_hashes))
                except (cmp.CompareError, SourceError) as error:  # a table not loaded, or not in the source
                    not_compared.append(f"{table.name}: not compared, {error}")
                except (DefaultCredentialsError, StackError):
                    raise  # no table can be compared: one line says why
                except Exception as error:  # noqa: BLE001 - one table's failure leaves the others to compare
                    with logs.told_by_command():  # the trace to the log file; the line below to the screen
                        log.exception("comparing %s failed", table.name)
                    timed_out = bigquery_timeout_line(error)
                    if timed_out is not None:
                        not_compared.append(f"{table.name}: not compared, {timed_out}")
                        continue
                    first_line = (str(error).strip().splitlines() or [""])[0][:300]
                    not_compared.append(f"{table.name}: not compared, {type(error).__name__}: {first_line} "
                                        "(the stack trace is in the log file)")
    finally:
        engine.dispose()
    return results, not_compared


def _print_comparisons(results: list[cmp.TableComparison], title: str, not_compared: list[str]) -> None:
    console.print(comparison_table(results, title))
    for line in not_compared:
        errors.print(styled(line, "bold red"), highlight=False, soft_wrap=True)
    for result in results:
        if result.note:
            errors.print(styled(f"{result.table}:", "bold yellow", f" {result.note}"), highlight=False, soft_wrap=True)
        if result.differences:
            console.print(differences_table(result))


@click.command("compare-keys")
@CONFIG_OPTION
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable)")
@click.option("--repair", is_flag=True, help="delete extras in BigQuery, re-extract the differing keys, compare again")
@click.option("--timeout", type=click.IntRange(min=1), default=None,
              help="seconds to wait for the repair's load (default from config)")
@click.option("--stored-hashes", is_flag=True,
              help="compare with BigQuery's stored hash columns only: quicker, blind to values edited in BigQuery "
                   "with their hash columns left alone")
@click.option("--keys-file", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help=f"write every differing key to this CSV file (the screen shows {MAX_SHOWN} a table)")
@expected_errors
def compare_keys(config_path: Path, tables: tuple[str, ...], repair: bool, timeout: int | None,
                 stored_hashes: bool, keys_file: Path | None) -> None:
    """Compares the live source with BigQuery key by key; exits 1 if any key differs or a table
    could not be compared."""
    if repair and stored_hashes:
        raise click.UsageError("--repair needs the hashes rebuilt from BigQuery's data: drop --stored-hashes")
    config = targeted_config(config_path)
    if keys_file is not None:
        _writable(keys_file, "--keys-file")
    results, not_compared = _compare_all(config, list(tables), keep=repair, stored_hashes=stored_hashes)
    try:
        _print_comparisons(results, f"compare-keys {config_path}", not_compared)
        if keys_file is not None:
            written = write_differences(results, keys_file)
            console.print(f"{written:,} differing key(s) written to {keys_file}", highlight=False)
        differing = [r.table for r in results if r.differences]
        if not differing:
            if not_compared:
                sys.exit(1)
            return
        if not repair:
            sys.exit(1)
        _repair(config, [r for r in results if r.differences], timeout or config.run.wait_timeout_s)
    finally:
        for result in results:
            cmp.drop_hash_table(result)
            result.close()
    again, not_compared_again = _compare_all(config, differing, keep=False)
    _print_comparisons(again, "after repair", not_compared_again)
    still_differing = any(r.differences for r in again)
    for result in again:
        result.close()
    if still_differing or not_compared_again:
        errors.print(styled("still differing after repair", "bold red"), highlight=False)
        sys.exit(1)
    console.print(styled("repaired: BigQuery equals the source", "green"))
    if not_compared:
        sys.exit(1)


def _writable(path: Path, option: str) -> None:
    """Refuses a file that cannot be written before minutes of work are spent on what goes into it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("a").close()  # not truncated yet: a failed comparison leaves an older file as it was
    except OSError as error:
        raise click.BadParameter(f"cannot write {path}: {error.strerror}", param_hint=option) from None


def _repair(config: Config, results: list[cmp.TableComparison], timeout_s: int) -> None:
    from matrix_sync.console import RichProgress, summary_table
    from matrix_sync.cycle import extract_all, wait_for_chain

    done = Table(title="repair in BigQuery", title_justify="left")
    for heading in ("table", "rows deleted", "hashes re-stamped", "ledger"):
        done.add_column(heading, justify="left" if heading in ("table", "ledger") else "right")
    for result in results:
        outcome = cmp.repair_in_bigquery(config, result)
        entry = "-"
        if outcome.deleted:
            entry = record_operator_action(config, result.table, result.target, ledger.OPERATOR_DELETE,
                                           outcome.deleted, f"compare-keys --repair: {result.count(cmp.EXTRA)} extra, "
                                           f"{result.count(cmp.DUPLICATE)} duplicated key(s)")
        done.add_row(result.table, f"{outcome.deleted:,}", f"{outcome.restamped:,}", entry)
    console.print(done)
    full = config.model_copy(update={"extract": config.extract.model_copy(update={"mode": "full"})})
    with RichProgress() as progress:
        extracted = extract_all(full, progress, [r.table for r in results])
        reports = wait_for_chain(full, extracted, timeout_s, progress)
    console.print(summary_table(reports, "re-extraction (full snapshot)"))


# --- validate -----------------------------------------------------------------------------------


@click.command("validate")
@CONFIG_OPTION
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable)")
@click.option("--record", is_flag=True, help="also write the results to the validations table")
@expected_errors
def validate(config_path: Path, tables: tuple[str, ...], record: bool) -> None:
    """Runs the validator's checks on each table against its latest applied snapshot; exits 1 on failure."""
    config = targeted_config(config_path)
    chosen = [config.table(name) for name in tables] if tables else config.tables
    stats = bq_jobs.JobStats()
    with console.status("validating") as status:
        rows, failed = validation_rows(config, chosen, record=record, stats=stats,
                                       on_table=lambda name: status.update(f"validating {name}"))
    table = Table(title=f"validate {config_path}", title_justify="left")
    for heading in ("table", "check", "result", "observed", "expected"):
        table.add_column(heading)
    for row in rows:
        table.add_row(*row, style="" if row[2] != "FAILED" else "bold red")
    console.print(table)
    if failed:
        errors.print(styled("failed:", "bold red", f" {', '.join(failed)}"), highlight=False)
        sys.exit(1)


# --- delete / truncate --------------------------------------------------------------------------


def _count(config: Config, table_id: str, where: str, params: list[Any]) -> int:
    rows = bq_jobs.run(config.bigquery.project, f"SELECT COUNT(*) AS n FROM {q(*table_id.split('.'))} WHERE {where}",
                       params)
    return int(rows[0]["n"])


def _destroy(config: Config, table_name: str, where: str, params: list[Any], *, what: str, status: str,
             dry_run: bool, yes: bool) -> None:
    table = config.table(table_name)
    table_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{table.target_table}"
    if bq.get_table(table_id) is None:
        raise OperatorError(f"{table_id} does not exist: nothing to {what}")
    count = _count(config, table_id, where, params)
    if dry_run:
        console.print(f"dry run: {what} would remove {count:,} row(s) from {table_id}")
        return
    if not yes:
        raise OperatorError(f"refusing to {what} {count:,} row(s) of {table_id} without --yes")
    stats = bq_jobs.JobStats()
    bq_jobs.run(config.bigquery.project, f"DELETE FROM {q(*table_id.split('.'))} WHERE {where}", params, stats=stats)
    if not stats.dml_rows:  # nothing changed: no ledger entry, so the next snapshot may still be a delta
        console.print(f"{what}: no row of {table_id} matched; nothing was removed")
        return
    entry = record_operator_action(config, table.name, table_id, status, stats.dml_rows,
                                   f"{what}: {where}{described(params)}"[:1000])
    _log_removal(table_id, entry, what, where, stats.dml_rows)
    summary = Table(title=what, title_justify="left")
    for heading in ("table", "rows removed", "ledger entry"):
        summary.add_column(heading)
    summary.add_row(table_id, f"{stats.dml_rows:,}", entry)
    console.print(summary)
    console.print("the next `matrix-sync run` brings back whatever the source still holds")


def _log_removal(table_id: str, ledger_run_id: str, what: str, where: str, rows: int) -> None:
    """The log file's line for a delete or truncate, labelled with its ledger entry: a --key condition
    names its columns with parameters (`customer_id` = @k0), never their values; a --where condition is
    as typed, passwords cut out."""
    condition = redact(where)
    which = ", every row" if condition == "TRUE" else f" where {condition}"
    with logs.labels(run_id=ledger_run_id, table=table_id):
        logs.event(log, f"{what}: {rows:,} row(s) removed from {table_id}{which}", rows=rows, condition=condition)


@click.command("delete")
@CONFIG_OPTION
@click.option("--table", "table_name", required=True)
@click.option("--key", "keys", multiple=True, metavar="COLUMN=VALUE",
              help="rows whose column equals the value (repeatable, ANDed)")
@click.option("--where", "where", default=None, help="a BigQuery condition instead of --key")
@click.option("--dry-run", is_flag=True, help="only count the rows")
@click.option("--yes", is_flag=True, help="really delete")
@expected_errors
def delete(config_path: Path, table_name: str, keys: tuple[str, ...], where: str | None, dry_run: bool,
           yes: bool) -> None:
    """Deletes rows from a BigQuery table (by key or condition) and records it in the ledger."""
    if bool(keys) == bool(where):
        raise OperatorError("give either --key COLUMN=VALUE ... or --where CONDITION")
    config = targeted_config(config_path)
    table = config.table(table_name)
    table_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{table.target_table}"
    condition, params = parse_key_filters(table_id, keys) if keys else (f"({checked_condition(where or '')})", [])
    _destroy(config, table_name, condition, params, what="delete", status=ledger.OPERATOR_DELETE, dry_run=dry_run,
             yes=yes)


@click.command("truncate")
@CONFIG_OPTION
@click.option("--table", "table_name", required=True)
@click.option("--dry-run", is_flag=True, help="only count the rows")
@click.option("--yes", is_flag=True, help="really truncate")
@expected_errors
def truncate(config_path: Path, table_name: str, dry_run: bool, yes: bool) -> None:
    """Removes every row of a BigQuery table and records it in the ledger."""
    config = targeted_config(config_path)
    _destroy(config, table_name, "TRUE", [], what="truncate", status=ledger.OPERATOR_TRUNCATE, dry_run=dry_run,
             yes=yes)


# --- status -------------------------------------------------------------------------------------


def status_table(title: str, rows: list[tuple[str, tuple[str, ...]]], unhealthy: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for heading, justify in [("table", "left"), ("last applied run", "left"), ("age", "right"), ("rows", "right"),
                             ("last extraction", "left"), ("last ledger entry", "left"), ("reconciliation", "left"),
                             ("validation", "left")]:
        # a run id is copied from here into other commands: never cut or wrapped, whatever the width
        table.add_column(heading, justify=justify, no_wrap=heading == "last applied run")  # type: ignore[arg-type]
    for name, row in rows:
        table.add_row(*row, style="bold red" if name in unhealthy else "")
    return table


@click.command("status")
@CONFIG_OPTION
@expected_errors
def status(config_path: Path) -> None:
    """Last runs per table from the ledger with their reconciliation and validation verdicts."""
    config = targeted_config(config_path)
    rows, unhealthy, hints = status_rows(config, dt.datetime.now(dt.UTC))
    table = status_table(f"status {config_path}", rows, unhealthy)
    print_unwrapped(table)
    if unhealthy:
        errors.print(styled("needs attention:", "bold red", f" {', '.join(unhealthy)}"), highlight=False)
        for hint in hints:
            errors.print(hint, highlight=False, soft_wrap=True)
        sys.exit(1)


COMMANDS = (compare_keys, validate, delete, truncate, status)


@click.group()
@click.option("--log-file", type=click.Path(path_type=Path), default=Path(".matrix-sync/logs/matrix-sync.jsonl"),
              show_default=True)
def operator_cli(log_file: Path) -> None:
    """Operator tools (standalone; normally sub-commands of `matrix-sync`)."""
    logs.configure(log_file=log_file)


for _command in COMMANDS:
    operator_cli.add_command(_command)

if __name__ == "__main__":
    operator_cli()
