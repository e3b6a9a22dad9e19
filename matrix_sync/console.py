"""What people see: progress bars while work runs, and tables to compare at a glance."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from matrix_sync.cycle import PENDING, TableReport, not_extracted_report, wait_for_chain
from matrix_sync.cycle import Progress as CycleProgress
from shared import ledger
from shared.config import Config
from shared.extractor.run import FailedTable, extract
from shared.extractor.snapshot import ExtractResult

# Piped output (CI, logs) gets a width that fits the summary table instead of rich's default 80.
# No markup: table names, keys and messages hold brackets ("dbo.[Order.Items]") that rich would
# take for styles, or refuse with a traceback; styles are given as `styled` text instead.
console = Console(width=None if sys.stdout.isatty() else 132, markup=False)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 132, markup=False)


def print_unwrapped(table: Table, widest: int = 400) -> None:
    """A terminal wraps the table to its width; piped output (logs, CI) gets it as wide as its rows
    are, up to `widest`, so no cell is wrapped or cut."""
    if console.is_terminal:
        console.print(table)
        return
    needed = console.measure(table, options=console.options.update_width(widest)).maximum
    Console(width=max(needed, console.width), markup=False).print(table)


def styled(label: str, style: str, rest: str = "") -> Text:
    """`label` in `style`, then `rest` as it is."""
    return Text.assemble((label, style), rest)


class RichProgress(CycleProgress):
    """Bars for extraction (rows per table) and for the wait on the event chain."""

    def __init__(self, expected_rows: dict[str, int | None] | None = None) -> None:
        self._expected = expected_rows or {}
        self._bars = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=console, transient=False)
        self._tasks: dict[str, TaskID] = {}
        self._wait: TaskID | None = None

    def __enter__(self) -> "RichProgress":
        self._bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.__exit__(*exc)

    def table_started(self, table: str) -> None:
        self._tasks[table] = self._bars.add_task(f"extract {table}", total=self._expected.get(table))

    def rows(self, table: str, count: int) -> None:
        self._bars.advance(self._tasks[table], count)

    def table_done(self, result: ExtractResult) -> None:
        task = self._tasks[result.table]
        self._bars.update(task, total=result.rows + result.quarantined, completed=result.rows + result.quarantined)

    def waiting(self, done: int, total: int) -> None:
        if self._wait is None:
            self._wait = self._bars.add_task("load, reconcile, validate", total=total)
        self._bars.update(self._wait, completed=done)


def summary_table(reports: list[TableReport], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading, justify in [("table", "left"), ("mode", "left"), ("source rows", "right"), ("shipped", "right"),
                             ("load", "left"), ("inserted", "right"),
                             ("updated", "right"), ("deleted", "right"), ("reconciliation", "left"),
                             ("validation", "left")]:
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        style = "" if r.ok else "bold red"
        table.add_row(r.table, r.mode, f"{r.source_rows:,}", f"{r.shipped_rows:,}", r.load_status, f"{r.rows_inserted:,}", f"{r.rows_updated:,}",
                      f"{r.rows_deleted:,}", r.reconciliation, r.verdict, style=style)
    return table


def print_not_extracted(failed: FailedTable) -> None:
    errors.print(styled(f"{failed.table}:", "bold red", f" not extracted, {failed.reason}"), highlight=False,
                 soft_wrap=True)


def run_and_report(config: Config, tables: list[str], timeout_s: int, title: str) -> bool:
    """One cycle with progress bars and a summary table; True when every table reconciled."""
    with RichProgress() as progress:
        extraction = extract(config, tables or None, progress)
        reports = wait_for_chain(config, extraction.written, timeout_s, progress)
    reports += [not_extracted_report(config, locked.table, "locked") for locked in extraction.locked]
    reports += [not_extracted_report(config, failed.table, "failed") for failed in extraction.failed]
    console.print(summary_table(reports, title))
    for failed in extraction.failed:
        print_not_extracted(failed)
    for result in extraction.written:
        if result.quarantined:
            errors.print(styled(f"{result.table}:", "bold yellow", f" {result.quarantined:,} row(s) quarantined, each "
                                f"with its reason, in {result.manifest_uri.rsplit('/', 1)[0]}/quarantine-*.jsonl"),
                         highlight=False, soft_wrap=True)
    for report in reports:
        if report.load_status == ledger.REFUSED and report.message:
            errors.print(styled(f"{report.table}:", "bold red", f" refused, {report.message}"), highlight=False,
                         soft_wrap=True)
    failed = [r for r in reports if not r.ok]
    for report in failed:
        errors.print(styled("not verified:", "bold red", f" {report.table} ({report.problems})"), highlight=False,
                     soft_wrap=True)
    print_pending_loads_hint(reports)
    return not failed


def print_pending_loads_hint(reports: list[TableReport]) -> None:
    """What to look at when snapshots were written but never loaded within the wait."""
    if any(r.run_id and r.load_status == PENDING for r in reports):
        errors.print(styled("loads still pending:", "bold yellow",
                            " check that the loader runs (`matrix-sync stack status` on the local stack, the loader "
                            "function's logs in the cloud) and what `matrix-sync dead-letters` lists; `matrix-sync "
                            "run` again takes the tables again"), highlight=False, soft_wrap=True)
