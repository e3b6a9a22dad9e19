"""One replication cycle for a config: extract every table, then wait for the chain's verdicts."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from google.cloud import bigquery

from shared import bigquery as bq
from shared import ledger
from shared.config import Config
from shared.extractor.run import ExtractProgress, extract_tables
from shared.extractor.snapshot import ExtractResult
from shared.topology import LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE

PENDING = "pending"


@dataclass
class TableReport:
    """What happened to one table in one cycle, as the chain reported it in BigQuery."""

    table: str
    target: str
    run_id: str
    mode: str = "full"
    source_rows: int = 0  # rows read from the source, the quarantined ones included
    shipped_rows: int = 0
    quarantined: int = 0
    load_status: str = PENDING
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    reconciliation: str = PENDING
    validation: str = PENDING
    failed_checks: list[str] = field(default_factory=list)
    message: str = ""  # why the loader refused or skipped the snapshot

    @property
    def done(self) -> bool:
        if self.load_status in (ledger.REFUSED, ledger.STALE):
            return True
        return self.load_status != "pending" and "pending" not in (self.reconciliation, self.validation)

    @property
    def ok(self) -> bool:
        return (self.load_status in (ledger.APPLIED, ledger.DUPLICATE) and self.reconciliation == "match"
                and self.validation == "passed")

    @property
    def problems(self) -> str:
        """What keeps the table from being ok, in a few words."""
        if not self.run_id:
            return f"not extracted, {self.load_status}"
        if self.load_status not in (ledger.APPLIED, ledger.DUPLICATE):
            return f"load {self.load_status}"  # nothing is reconciled or validated after it
        found = [] if self.reconciliation == "match" else [f"reconciliation {self.reconciliation}"]
        found += [] if self.validation == "passed" else [f"validation {self.verdict}"]
        return "; ".join(found)

    @property
    def verdict(self) -> str:
        """The validation verdict with the checks that failed."""
        return f"failed: {', '.join(self.failed_checks)}" if self.failed_checks else self.validation


class Progress(ExtractProgress):
    """Callbacks the CLI turns into progress bars; tests pass nothing."""

    def waiting(self, done: int, total: int) -> None: ...


def extract_all(config: Config, progress: Progress | None = None, tables: list[str] | None = None) -> list[ExtractResult]:
    return extract_tables(config, tables, progress)


def not_extracted_report(config: Config, table: str, status: str) -> TableReport:
    """A table this cycle wrote no snapshot of (another extraction held its lock, or its definition
    failed): not ok, nothing to wait for."""
    target = f"{config.bigquery.project}.{config.bigquery.dataset}.{config.table(table).target_table}"
    return TableReport(table, target, run_id="", mode="", load_status=status, reconciliation="skipped",
                       validation="skipped")


MIN_POLL_S = 0.1


def wait_for_chain(config: Config, extracted: list[ExtractResult], timeout_s: float,
                   progress: Progress | None = None, poll_s: float = 1.0) -> list[TableReport]:
    """Polls the ledger and results tables until every snapshot is loaded, reconciled and validated.

    Polls follow each other after MIN_POLL_S when the last one saw something change, and slow down
    to `poll_s` while nothing does; each asks only about what is still pending."""
    progress = progress or Progress()
    project, dataset = config.bigquery.project, config.bigquery.dataset
    reports = {
        r.run_id: TableReport(r.table, f"{project}.{dataset}.{config.table(r.table).target_table}", r.run_id,
                              mode=r.mode, source_rows=r.rows + r.quarantined, shipped_rows=r.shipped_rows,
                              quarantined=r.quarantined)
        for r in extracted
    }
    deadline = time.monotonic() + timeout_s
    existing: set[str] = set()
    interval, seen = min(MIN_POLL_S, poll_s), _states(reports)
    while True:
        _refresh(project, dataset, reports, existing)
        done = sum(r.done for r in reports.values())
        progress.waiting(done, len(reports))
        if done == len(reports) or time.monotonic() > deadline:
            return list(reports.values())
        states = _states(reports)
        interval = min(poll_s, MIN_POLL_S if states != seen else interval * 1.5)
        seen = states
        time.sleep(interval)


def _states(reports: dict[str, TableReport]) -> list[tuple[str, str, str]]:
    return [(r.load_status, r.reconciliation, r.validation) for r in reports.values()]


def _refresh(project: str, dataset: str, reports: dict[str, TableReport], existing: set[str]) -> None:
    """Reads the ledger for snapshots not known applied, and the results of loaded ones not yet
    reconciled or validated; `existing` remembers the tables found, so they are not looked up again.
    Each query is a job (in BigQuery a billed one, on the local stack CPU taken from the load)."""
    loading = [run_id for run_id, r in reports.items() if r.load_status != ledger.APPLIED]
    for row in _rows_if_table_exists(project, dataset, LEDGER_TABLE,
                                     "SELECT run_id, status, rows_inserted, rows_updated, rows_deleted, message FROM {t} "
                                     "WHERE run_id IN UNNEST(@run_ids)", loading, existing):
        report = reports[row["run_id"]]
        if report.load_status in ("pending", ledger.DUPLICATE) or row["status"] == ledger.APPLIED:
            report.load_status = row["status"]
            report.rows_inserted = row["rows_inserted"] or 0
            report.rows_updated = row["rows_updated"] or 0
            report.rows_deleted = row["rows_deleted"] or 0
            report.message = row.get("message") or ""
    # the results of a snapshot come only after its ledger row: nothing is asked about them before
    loaded = [run_id for run_id, r in reports.items() if r.load_status in (ledger.APPLIED, ledger.DUPLICATE)]
    reconciling = [run_id for run_id in loaded if reports[run_id].reconciliation == "pending"]
    for row in _rows_if_table_exists(project, dataset, RECONCILIATION_TABLE,
                                     "SELECT run_id, verdict FROM {t} WHERE run_id IN UNNEST(@run_ids)",
                                     reconciling, existing):
        reports[row["run_id"]].reconciliation = row["verdict"]
    checks: dict[str, list[str]] = {}
    validating = [run_id for run_id in loaded if reports[run_id].validation == "pending"]
    for row in _rows_if_table_exists(project, dataset, VALIDATION_TABLE,
                                     "SELECT run_id, check_name, passed FROM {t} WHERE run_id IN UNNEST(@run_ids)",
                                     validating, existing):
        failed = checks.setdefault(row["run_id"], [])
        if not row["passed"]:
            failed.append(row["check_name"])
    for run_id, failed in checks.items():
        reports[run_id].validation = "failed" if failed else "passed"
        reports[run_id].failed_checks = sorted(set(failed))


def _rows_if_table_exists(project: str, dataset: str, table: str, sql: str, run_ids: list[str],
                          existing: set[str]) -> list[bigquery.Row]:
    table_id = f"{project}.{dataset}.{table}"
    if not run_ids:
        return []
    if table_id not in existing:
        if bq.get_table(table_id) is None:
            return []
        existing.add(table_id)
    return bq.query(project, sql.format(t=f"`{table_id}`"), [bigquery.ArrayQueryParameter("run_ids", "STRING", run_ids)])
