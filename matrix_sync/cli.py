"""`matrix-sync`: operator commands in the original scripts' vocabulary, plus the local stack."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from rich.table import Table
from rich.text import Text

from matrix_sync import sample as sample_db
from matrix_sync.agent import ensure_subscription, request_extract, serve
from matrix_sync.console import RichProgress, console, errors, print_not_extracted, run_and_report, styled
from matrix_sync.dead_letters_command import dead_letters
from matrix_sync.environment import local_stack, target_config
from matrix_sync.errors import fail, one_line_errors, path_error
from matrix_sync.generate import create_tables, generate_models
from matrix_sync.operator import COMMANDS as OPERATOR_COMMANDS
from matrix_sync.report import report
from matrix_sync.stack import StackError
from shared import logs
from shared.config import ConfigError, load_config
from shared.extractor.run import Extraction
from shared.extractor.run import extract as extract_snapshots
from shared.extractor.source import SourceError
from shared.gcs import BucketUnavailable
from shared.pubsub import publish_json
from shared.reconciler.options import OptionsError
from shared.topology import RECONCILE_REQUESTS_TOPIC

# A Google service's refusal or failure (denied, quota, 500s past the retries) is told in its own words
# (missing credentials, by every command: matrix_sync.errors).
EXPECTED_ERRORS = (ConfigError, SourceError, StackError, sample_db.SampleError, BucketUnavailable, GoogleAPIError,
                   OptionsError)


friendly_errors = one_line_errors(*EXPECTED_ERRORS)


class _Commands(click.Group):
    """A file or directory no command could use (`report --output`, say, whose command reports its own
    errors) is one line too, naming the path and the reason."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as error:
            line = path_error(error)
            if line is None:  # a socket, say: nothing a user gave, so the traceback stays
                raise
            fail(line)


@click.group(cls=_Commands)
@click.option("--log-file", type=click.Path(path_type=Path), default=Path(".matrix-sync/logs/matrix-sync.jsonl"),
              show_default=True, help="JSON log lines (Cloud Logging format); warnings and errors also go to stderr, a line each.")
def main(log_file: Path) -> None:
    """Keeps BigQuery an exact, verified copy of the Matrix SQL Server."""
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, _exit_on_terminate)
    try:
        logs.configure(log_file=log_file)
    except OSError as error:
        fail(_log_file_error(log_file, error))


def _exit_on_terminate(signum: int, _frame: object) -> None:
    """SIGTERM (`systemctl stop`, a container's shutdown) unwinds like an error: Python's default
    ends the process at once, skipping the `finally` that releases a table's extraction lease, which
    then locked the table until it expired."""
    raise SystemExit(128 + signum)


def _log_file_error(log_file: Path, error: OSError) -> str:
    """The default log file is relative: run from a directory one may not write, it is the first thing to fail."""
    where = "" if error.filename in (None, str(log_file)) else f" ({error.filename})"
    return (f"cannot write the log file {log_file.absolute()}: {error.strerror or type(error).__name__}{where}; "
            "--log-file chooses another")


def _writable_file(path: Path) -> None:
    """SQLite tells only "unable to open database file": opening the file first names the path and the reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab"):
        pass


@main.group()
def stack() -> None:
    """The local stack: Pub/Sub, GCS and BigQuery emulators plus the function servers."""


@stack.command("install")
@friendly_errors
def stack_install() -> None:
    """Checks the emulator binaries and installs DuckDB's extensions (idempotent)."""
    local_stack().install()
    console.print("stack prerequisites ready")


@stack.command("up")
@friendly_errors
def stack_up() -> None:
    """Starts what is not running yet and creates the default topics, bucket and dataset."""
    stack_ = local_stack()
    stack_.up(progress=lambda message: console.print(f"  {message}"))
    _print_status(stack_)


@stack.command("down")
@friendly_errors
def stack_down() -> None:
    """Stops exactly the processes `up` started."""
    stopped = local_stack().down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command("status")
@friendly_errors
def stack_status() -> None:
    """Each service with its pid, port and whether it runs; exits 1 when something is down."""
    if not _print_status(local_stack()):
        sys.exit(1)


@stack.command("env")
@friendly_errors
def stack_env() -> None:
    """`export` lines that point any google-cloud client at the stack: eval "$(matrix-sync stack env)"."""
    for name, value in local_stack().env().items():
        click.echo(f"export {name}={value}")


def _print_status(stack_: Any) -> bool:
    statuses = stack_.status()
    table = Table(title=f"local stack ({stack_.root})", title_justify="left")
    for heading in ("service", "pid", "port", "state", "log"):
        table.add_column(heading)
    for s in statuses:
        state = Text("running", "green") if s.running else Text("stopped", "red")
        table.add_row(s.name, str(s.pid or "-"), str(s.port), state, str(s.log))
    console.print(table if any(s.running for s in statuses) else "the local stack is not running (matrix-sync stack up)")
    return bool(statuses) and all(s.running for s in statuses)


@main.group()
def sample() -> None:
    """The sample Matrix source: a SQLite file modelled on a print-subscription business."""


@sample.command("create")
@click.option("--path", type=click.Path(path_type=Path), default=Path(".matrix-sync/demo/matrix.db"), show_default=True)
@click.option("--size", default="small", show_default=True, help=f"one of {', '.join(sample_db.SIZES)} or a customer count")
@click.option("--seed", type=int, default=7, show_default=True)
@friendly_errors
def sample_create(path: Path, size: str, seed: int) -> None:
    """(Re)creates the sample database."""
    _writable_file(path)
    counts = sample_db.create_sample(path, int(size) if size.isdigit() else size, seed)
    table = Table(title=f"sample source {path}", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


@sample.command("mutate")
@click.option("--path", type=click.Path(path_type=Path), default=Path(".matrix-sync/demo/matrix.db"), show_default=True)
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="share of rows changed per table")
@click.option("--seed", type=int, default=None)
@friendly_errors
def sample_mutate(path: Path, fraction: float, seed: int | None) -> None:
    """Applies a random batch of inserts, updates and deletes."""
    changes = sample_db.mutate(path, fraction, seed)
    table = Table(title=f"changes applied to {path}", title_justify="left")
    for heading in ("table", "inserted", "updated", "deleted"):
        table.add_column(heading, justify="left" if heading == "table" else "right")
    for name, change in changes.items():
        table.add_row(name, str(change.inserted), str(change.updated), str(change.deleted))
    console.print(table)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable)")
@click.option("--timeout", type=click.IntRange(min=1), default=None,
              help="seconds to wait for the chain (default from config)")
@friendly_errors
def run(config_path: Path, tables: tuple[str, ...], timeout: int | None) -> None:
    """Runs one cycle: snapshot every table, then wait until each is loaded, reconciled and validated."""
    config = load_config(config_path)
    where = target_config(config)
    console.print(f"cycle for {config_path} -> {config.bigquery.project}.{config.bigquery.dataset} ({where})")
    with logs.told_by_command():  # each table that failed: a line of its own below the summary
        verified = run_and_report(config, list(tables), timeout or config.run.wait_timeout_s,
                                  title=f"cycle {config_path}")
    if not verified:
        sys.exit(1)


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable)")
@click.option("--full", is_flag=True, help="full snapshots even where a delta is possible")
@friendly_errors
def extract(config_path: Path, tables: tuple[str, ...], full: bool) -> None:
    """Writes the snapshots and returns; the loader takes them from the bucket's notifications."""
    config = load_config(config_path)
    target_config(config)
    with RichProgress() as progress, logs.told_by_command():  # each failed table: a line of its own below
        outcome = extract_snapshots(config, list(tables) or None, progress, force_full=full)
    for r in outcome.written:
        console.print(f"{r.table}: {r.mode} snapshot {r.run_id}, {r.rows:,} rows, {r.shipped_rows:,} shipped, "
                      f"{r.deleted_rows:,} deleted, {r.quarantined:,} quarantined")
    for locked in outcome.locked:
        console.print(locked.describe())
    for failed in outcome.failed:
        print_not_extracted(failed)
    if outcome.locked:
        errors.print(f"skipped, another extraction holds them: {', '.join(t.table for t in outcome.locked)}",
                     highlight=False)
    if outcome.locked or outcome.failed:
        sys.exit(1)


@main.command("request")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable); default all")
@friendly_errors
def request(config_path: Path, tables: tuple[str, ...]) -> None:
    """Publishes an extract request, as Cloud Scheduler does; the agent or extractor function runs it."""
    config = load_config(config_path)
    names = [config.table(name).name for name in tables]  # a name not in the config is refused here
    target_config(config)
    ensure_subscription(config)
    message_id = request_extract(config, names)
    console.print(f"extract request {message_id} published for {', '.join(names) or 'all tables'}")


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--once", is_flag=True, help="handle at most one request, then exit")
@click.option("--idle-timeout", type=float, default=None, help="exit after this many idle seconds")
@friendly_errors
def agent(config_path: Path, once: bool, idle_timeout: float | None) -> None:
    """The on-prem extractor: pulls extract requests and writes the snapshots they ask for."""
    config = load_config(config_path)
    where = target_config(config)
    console.print(f"extractor agent for {config_path} ({where}); waiting for extract requests")

    def show(outcome: Extraction) -> None:
        for r in outcome.written:
            console.print(f"  {r.table}: {r.mode} snapshot {r.run_id}, {r.rows:,} rows, {r.shipped_rows:,} shipped")
        for locked in outcome.locked:
            console.print(f"  {locked.describe()}")
        for failed in outcome.failed:
            errors.print(f"  {failed.describe()}", highlight=False, soft_wrap=True)

    handled = serve(config, once=once, idle_timeout_s=idle_timeout, on_results=show)
    console.print(f"handled {handled} request(s)")


@main.command("reconcile")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--table", "tables", multiple=True, help="only these tables (repeatable); default: the config's")
@click.option("--deep/--fingerprint", default=None,
              help="--deep rebuilds every row's hashes from its data, so values edited in BigQuery without touching "
                   "the hash columns are caught; --fingerprint compares the stored hashes; default: each table's "
                   "`deep` setting in MATRIX_RECONCILE")
@click.option("--publish", is_flag=True, help="publish the request to reconcile-requests, as Cloud Scheduler does, "
                                              "and let the reconciler function run it")
@friendly_errors
def reconcile_command(config_path: Path, tables: tuple[str, ...], deep: bool | None, publish: bool) -> None:
    """Checks tables against their newest applied snapshot now, repairs what differs and prints the
    certificates; exits 1 if a table is not clean."""
    from matrix_sync.reconcile_view import certificate_messages, certificates_table
    from shared.reconciler.on_request import check_table, resolve
    from shared.reconciler.options import from_environment
    from shared.reconciler.request import new_request

    config = load_config(config_path)
    target_config(config)
    # the config's tables, not every table of the dataset: another config may share it; a name not
    # in the config is refused as every command refuses it
    names = [config.table(name).target_table for name in tables] or [t.target_table for t in config.tables]
    request = new_request(project=config.bigquery.project, dataset=config.bigquery.dataset,
                          pubsub_project=config.pubsub.project, tables=names, deep=deep,
                          requested_by="operator")
    found, unknown = resolve(request)
    if unknown:
        errors.print(f"no applied snapshot of: {', '.join(unknown)}", highlight=False)
    if unknown and publish and tables:  # a name typed wrong: the reconciler would only alert about it
        sys.exit(1)
    if publish:
        message_id = publish_json(config.pubsub.project, RECONCILE_REQUESTS_TOPIC, request.body())
        console.print(f"reconcile request {message_id} published for {', '.join(names)}")
        return
    for table_id in found:  # a broken MATRIX_RECONCILE is refused here, not read as "repair everything"
        from_environment(table_id, strict=True)
    certificates, not_reconciled = [], []
    for table_id in found:
        try:
            certificates.append(check_table(request, table_id))
        except (GoogleAuthError, StackError):
            raise  # no table can be reconciled: one line says why
        except Exception as error:  # noqa: BLE001 - one broken table leaves the others to reconcile
            not_reconciled.append(_not_reconciled(table_id, error))
    if certificates or not not_reconciled:
        console.print(certificates_table(certificates, title="reconciliation"))
    for line in certificate_messages(certificates):
        console.print(line, highlight=False, soft_wrap=True)
    for line in not_reconciled:
        errors.print(styled(line, "bold red"), highlight=False, soft_wrap=True)
    if unknown or not_reconciled or not all(c.clean for c in certificates):
        sys.exit(1)


def _not_reconciled(table_id: str, error: Exception) -> str:
    """The table's line for the screen; its stack trace goes to the log file only."""
    from matrix_sync.reconcile_view import not_reconciled_line

    line = not_reconciled_line(table_id, error)
    with logs.told_by_command(), logs.labels(table=table_id):
        logs.get(__name__).error("%s", line, exc_info=error)
    return line


@main.command()
@click.option("--size", default="small", show_default=True, help=f"sample size: {', '.join(sample_db.SIZES)}")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="share of rows changed between cycles")
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path(".matrix-sync/demo"), show_default=True)
@friendly_errors
def demo(size: str, fraction: float, workdir: Path) -> None:
    """Stack up, sample source, a full cycle, a batch of changes, a second cycle, and the verdicts."""
    from matrix_sync.demo import run_demo

    sample_db.customer_count(size)  # a size not known is refused before anything starts
    _writable_file(workdir / "matrix.db")  # where run_demo creates the sample source
    if not run_demo(size=size, fraction=fraction, workdir=workdir):
        sys.exit(1)
@main.command()
@click.option("--tables", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--max-rows", type=click.IntRange(100, 10_000_000), default=1_000_000, show_default=True,
              help="rows of the largest table; the others are log-uniform from 100 up")
@click.option("--cycles", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="tables extracted at once")
@click.option("--mode", type=click.Choice(["delta", "full"]), default="delta", show_default=True)
@click.option("--time-limit", type=click.FloatRange(min=0), default=1800, show_default=True,
              help="seconds from the first cycle's start; no new cycle starts after it (one started runs to its end)")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path(".matrix-sync/loadtest"), show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="also write the report as JSON")
@click.option("--keep", is_flag=True, help="keep the run's dataset, bucket and files (removed at the end by default)")
@friendly_errors
def loadtest(tables: int, max_rows: int, cycles: int, workers: int, mode: str, time_limit: float, seed: int,
             workdir: Path, json_path: Path | None, keep: bool) -> None:
    """Many tables synced concurrently through the local stack for several change cycles, in a dataset,
    bucket and files of their own. A stack this command starts is stopped at the end."""
    from matrix_sync import loadtest as load
    from matrix_sync.loadtest_process import stack_for_run

    stack_ = local_stack()
    with stack_for_run(stack_) as started_here:
        pids = {s.name: s.pid for s in stack_.status() if s.pid}
        report = load.run_load(workdir, tables=tables, max_rows=max_rows, cycles=cycles, workers=workers, mode=mode,
                               time_limit_s=time_limit, seed=seed, service_pids=pids, project="matrix-load", keep=keep)
    table = Table(title=f"load test {report.run}: {report.tables} tables, {report.total_rows:,} rows",
                  title_justify="left", caption="latency: from each table's own manifest to its verdict (polled every "
                  f"{load.POLL_S:g} s); rows/s: rows over the cycle's seconds", caption_justify="left")
    for heading in ("cycle", "source rows", "shipped rows", "seconds", "source rows/s", "shipped rows/s",
                    "slowest table", "latency s", "failures"):
        table.add_column(heading, justify="left" if heading in ("slowest table", "failures") else "right")
    for c in report.cycles:
        latency = "-" if c.slowest_latency_s is None else f"{c.slowest_latency_s:.1f}"
        table.add_row(str(c.cycle), f"{c.rows:,}", f"{c.shipped_rows:,}", f"{c.seconds:.1f}",
                      f"{c.source_rows_per_s:,.0f}", f"{c.shipped_rows_per_s:,.0f}", c.slowest_table, latency,
                      "; ".join(c.failures)[:80] or "-", style="bold red" if c.failures else "")
    console.print(table)
    console.print("peak memory MB (at start in brackets): " + ", ".join(
        f"{k} {v:,.0f} ({report.memory_at_start_mb.get(k, 0):,.0f})" for k, v in report.peak_memory_mb.items()))
    console.print(f"  measured: {report.memory_measured}", style="dim")
    if report.stop_reason:
        console.print(styled("stopped early: ", "bold yellow", f"{report.stop_reason} (a time limit is no failure)"))
    if report.duplicate_or_lost_runs:
        errors.print(styled("ledger anomalies:", "bold red", f" {report.duplicate_or_lost_runs[:5]}"), highlight=False)
    done = "kept" if report.kept else "removed"
    console.print(f"{done}: dataset {report.dataset} (and its staging dataset), bucket {report.bucket}, "
                  f"{workdir}/load-{report.run}.db and .yaml")
    for problem in report.cleanup_problems:
        errors.print(styled("not removed: ", "bold yellow", problem), highlight=False)
    if started_here:
        console.print("stopped the local stack this load test started")
    if json_path:
        json_path.write_text(load.report_json(report))
    if not report.ok:
        sys.exit(1)


main.add_command(create_tables)
main.add_command(generate_models)
main.add_command(report)
main.add_command(dead_letters)
for _operator_command in OPERATOR_COMMANDS:  # they report their own errors, one line, exit 2
    main.add_command(_operator_command)

if __name__ == "__main__":
    main()
