"""Extracting a set of configured tables: what the on-prem agent, the extractor function and
`matrix-sync run` all do. Each table is extracted under its lock (shared/extractor/lock.py), so a
table another extraction is working on is skipped and reported, never extracted twice at once.
A table that cannot be snapshotted fails alone: it is reported and the other tables go on. Its
definition (gone from the source, a key column missing, a column type with no BigQuery type) or a
privilege the source user lacks fails it the same way every time; a source that goes away mid-way
ends the request with SourceLost, as one that cannot be reached at connect time does (SourceError);
any other error is `unexpected`, and whoever delivered the request delivers it again
(`Extraction.unexpected`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from google.auth.exceptions import GoogleAuthError
from sqlalchemy.engine import Engine

from shared import logs
from shared.config import Config, TableConfig
from shared.extractor import outcomes
from shared.extractor.lock import Clock, Lease, LeaseLost, TableLocked, table_lock, utc_now
from shared.extractor.snapshot import ExtractResult, extract_table, new_run_id
from shared.extractor.source import SourceError, SourceLost, connect, discover, find_duplicated_keys, source_failure
from shared.gcs import BucketUnavailable
from shared.secrets import error_line

log = logs.get(__name__)
# Errors every table would meet the same way (no bucket to write to, no credentials).
EVERY_TABLE_ERRORS = (BucketUnavailable, GoogleAuthError)


@dataclass(frozen=True)
class LockedTable:
    """A table skipped because another extraction holds its lock (or took it over mid-way)."""

    table: str
    reason: str
    holder: str
    host: str
    expires_at: datetime | None

    def describe(self) -> str:
        if self.expires_at is None:
            return f"{self.table}: skipped, {self.reason}"
        return (f"{self.table}: skipped, {self.reason} by extraction {self.holder} on {self.host} "
                f"until {self.expires_at:%Y-%m-%d %H:%M:%S} UTC")


@dataclass(frozen=True)
class FailedTable:
    """A table not snapshotted (no manifest was written): its definition cannot be, or `unexpected`ly."""

    table: str
    reason: str
    unexpected: bool = False

    def describe(self) -> str:
        return f"{self.table}: not extracted, {self.reason}"


@dataclass
class Extraction:
    """What one request did: the snapshots written, the tables skipped and the tables failed."""

    written: list[ExtractResult] = field(default_factory=list)
    locked: list[LockedTable] = field(default_factory=list)
    failed: list[FailedTable] = field(default_factory=list)

    @property
    def unexpected(self) -> list[FailedTable]:
        """Failures another attempt may not meet: the request is worth delivering again."""
        return [failed for failed in self.failed if failed.unexpected]


class ExtractProgress:
    """Callbacks for progress display; the default shows nothing."""

    def table_started(self, table: str) -> None: ...
    def rows(self, table: str, count: int) -> None: ...
    def table_done(self, result: ExtractResult) -> None: ...
    def table_locked(self, locked: LockedTable) -> None: ...


def extract(config: Config, tables: list[str] | None = None, progress: ExtractProgress | None = None,
            *, force_full: bool = False, clock: Clock = utc_now) -> Extraction:
    """One snapshot per table, in config order, each under its table's lock; one source connection
    pool for all of them."""
    progress = progress or ExtractProgress()
    # a table named twice (by its source and its BigQuery name, say) is extracted once
    chosen = list({t.name: t for t in (config.table(name) for name in tables)}.values()) if tables else config.tables
    holder = new_run_id()
    outcome = Extraction()
    try:
        engine = connect(config.source)
    except SourceError as error:
        for table in chosen:
            _record(config, table, outcomes.FAILED, reason=str(error))
        raise
    try:
        with logs.labels(lock_holder=holder):
            for at, table in enumerate(chosen):
                try:
                    with table_lock(config.gcs.bucket, config.gcs.prefix, table.target_table, holder,
                                    config.extract.lock_lease_s, clock) as lease:
                        result = _extract_locked(config, engine, table, lease, progress, force_full)
                except TableLocked as error:
                    _skipped(LockedTable(table.name, "locked", error.holder.holder, error.holder.host,
                                         error.holder.expires_at), outcome, progress)
                except LeaseLost:
                    _skipped(LockedTable(table.name, "lock taken over mid-way by another extraction", "", "", None),
                             outcome, progress)
                except SourceLost as error:
                    _source_lost(config, chosen[at:], outcome, error)
                except SourceError as error:
                    _failed(config, table, FailedTable(table.name, str(error)), outcome)
                except EVERY_TABLE_ERRORS:
                    raise  # one error for the whole request
                except Exception as error:  # drivers' and clients' own types: this table fails, the rest go on
                    _raise_interrupt(error)
                    known = source_failure(table.name, error)  # a privilege revoked, the source gone
                    if isinstance(known, SourceLost):
                        _source_lost(config, chosen[at:], outcome, known, error)
                    failed = (FailedTable(table.name, str(known)) if known is not None else
                              FailedTable(table.name, f"{type(error).__name__}: {error_line(error)}", unexpected=True))
                    _failed(config, table, failed, outcome, error if known is None else None)
                else:
                    _record(config, table, outcomes.EXTRACTED, run_id=result.run_id)
                    progress.table_done(result)
                    outcome.written.append(result)
    finally:
        engine.dispose()
    return outcome


def _raise_interrupt(error: BaseException) -> None:
    """Ctrl-C stops the run: a library that turns the KeyboardInterrupt into an error of its own
    (DuckDB's "Query interrupted", raised from it) must not make it one failed table among others."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt from error
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__


def _record(config: Config, table: TableConfig, outcome: str, *, run_id: str | None = None,
            reason: str | None = None) -> None:
    outcomes.record(config.gcs.bucket, config.gcs.prefix, table.target_table, outcome, run_id=run_id, reason=reason)


def extract_tables(config: Config, tables: list[str] | None = None, progress: ExtractProgress | None = None,
                   *, force_full: bool = False) -> list[ExtractResult]:
    """The snapshots written; locked and failed tables are skipped and logged (see `extract`)."""
    return extract(config, tables, progress, force_full=force_full).written


def _extract_locked(config: Config, engine: Engine, table: TableConfig, lease: Lease, progress: ExtractProgress,
                    force_full: bool) -> ExtractResult:
    progress.table_started(table.name)
    source = find_duplicated_keys(engine, discover(engine, table))

    def on_rows(count: int) -> None:
        lease.check()  # a lease lost mid-way stops the extraction before its manifest
        progress.rows(table.name, count)

    return extract_table(config, engine, source, on_rows=on_rows, force_full=force_full,
                         next_sequence=lease.next_sequence, last_issued=lease.sequence)


def _source_lost(config: Config, left: list[TableConfig], outcome: Extraction, lost: SourceLost,
                 error: BaseException | None = None) -> None:
    """The source went away: the tables not extracted yet are recorded failed and the request ends
    as at connect time, to be delivered again once the source may be back (the snapshots already
    written stand)."""
    logs.event(log, f"extraction stopped: {lost}", logging.ERROR, outcome="source lost", table=left[0].name,
               written=[r.table for r in outcome.written], exc_info=error)
    for table in left:
        _record(config, table, outcomes.FAILED, reason=str(lost))
    raise lost from None


def _skipped(locked: LockedTable, outcome: Extraction, progress: ExtractProgress) -> None:
    logs.event(log, f"extraction {locked.describe()}", logging.WARNING, outcome="locked", table=locked.table,
               holder=locked.holder, holder_host=locked.host,
               expires_at=locked.expires_at.isoformat() if locked.expires_at else None)
    outcome.locked.append(locked)
    progress.table_locked(locked)


def _failed(config: Config, table: TableConfig, failed: FailedTable, outcome: Extraction,
            error: BaseException | None = None) -> None:
    _record(config, table, outcomes.FAILED, reason=failed.reason)
    logs.event(log, f"extraction of {failed.describe()}", logging.ERROR, outcome="failed", table=failed.table,
               reason=failed.reason, unexpected=failed.unexpected, exc_info=error)
    outcome.failed.append(failed)
