"""Applying one snapshot to its BigQuery table, exactly once in effect.

Order matters: everything that can refuse a snapshot (ledger verdict, parts, schema) is checked
before anything is changed; then schema additions, staging, and one transaction for the rest.
"""
from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from shared import bigquery as bq
from shared import ledger, logs
from shared.identifiers import quote_bigquery
from shared.loader import faults, index_compaction, locks, schema_plan, staging
from shared.loader.conflicts import retry_on_conflict
from shared.loader.decide import Verdict, decide
from shared.loader.errors import BaseNotApplied, RefusedError
from shared.loader.merge_sql import (
    BASE_MISSING,
    BASE_SUPERSEDED,
    DIVERGED,
    DUPLICATE_KEYS,
    LoadValues,
    load_script,
    repeated_keys_query,
)
from shared.loader.part_footers import check_parts
from shared.manifest import Manifest

_SHOWN_KEYS = 5
log = logs.get(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class LoadOutcome:
    status: str
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0
    message: str = ""
    needs_publish: bool = False  # committed, and `table-loaded` not yet published for it
    staged: staging.Staged | None = field(default=None, compare=False)  # to drop once published


def apply_snapshot(manifest: Manifest, manifest_uri: str) -> LoadOutcome:
    """Raises RefusedError (terminal), TransientError or any BigQuery error (both: deliver again).
    A returned outcome's staging tables are the caller's to drop (after publishing); on a raise they
    are dropped here."""
    started = time.monotonic()
    target = manifest.target
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="loader-check") as pool:
        # read-only, side by side with the ledger's history; the parts' verdict counts only if the ledger's lets
        # the snapshot through (a duplicate whose parts are gone is still a duplicate)
        parts_checked = _beside(pool, check_parts, manifest)
        bq.ensure_dataset(target.project, target.dataset)
        ledger.ensure(target.project, target.dataset)
        existing = _beside(pool, bq.get_table, target.table_id)
        history = ledger.history(target.project, target.dataset, target.table_id, manifest.run_id,
                                 manifest.delta.base_run_id if manifest.delta else None)
        decision = decide(manifest, history, manifest_uri, table_exists=existing.result() is not None)
        if decision.verdict is Verdict.DUPLICATE:
            return _duplicate(manifest, manifest_uri,
                              published=bool(decision.applied and decision.applied.published))
        if decision.verdict is Verdict.STALE:
            return LoadOutcome(ledger.STALE, message=decision.reason)
        if decision.verdict is Verdict.WAIT_FOR_BASE:
            raise BaseNotApplied(decision.reason)
        if decision.verdict in (Verdict.BASE_SUPERSEDED, Verdict.FOREIGN):
            raise RefusedError(decision.reason)
        parts_checked.result()
    schema_plan.refuse_what_the_emulator_cannot_hold(manifest)
    compaction = index_compaction.Compaction(manifest, manifest_uri)
    committed = False
    staged: staging.Staged | None = None
    try:
        try:
            plan = schema_plan.plan(existing.result(), manifest, history.latest)
            schema_plan.apply(manifest, plan)
            fresh = staging.stage(manifest)
            faults.inject(faults.AFTER_STAGE)  # a crash here leaves the staging for the redelivery to reuse
            staged = fresh
            outcome = retry_on_conflict(lambda: _run(manifest, manifest_uri, fresh, plan.reordered))
            committed = outcome.needs_publish
        finally:
            compaction.finish(committed=committed)
    except BaseException:
        staging.drop(staged)
        raise
    return LoadOutcome(outcome.status, outcome.rows_inserted, outcome.rows_updated, outcome.rows_deleted,
                       round(time.monotonic() - started, 3), outcome.message, outcome.needs_publish, staged)


def _beside(pool: ThreadPoolExecutor, check: Callable[..., T], *args: object) -> Future[T]:
    """`check(*args)` on the pool, in a copy of this context (its log lines carry the event's labels)."""
    return pool.submit(contextvars.copy_context().run, check, *args)


def _duplicate(manifest: Manifest, manifest_uri: str, *, published: bool) -> LoadOutcome:
    if published:
        return LoadOutcome(ledger.DUPLICATE)
    # The first delivery committed and died before publishing: the counts come from its ledger row.
    index_compaction.ensure(manifest, manifest_uri)
    target = manifest.target
    row = ledger.applied_run(target.project, target.dataset, target.table_id, manifest.run_id) or {}
    return LoadOutcome(ledger.DUPLICATE, int(row.get("rows_inserted") or 0), int(row.get("rows_updated") or 0),
                       int(row.get("rows_deleted") or 0), needs_publish=True)


def _run(manifest: Manifest, manifest_uri: str, staged: staging.Staged, reordered: tuple[str, ...]) -> LoadOutcome:
    """`reordered`: the stored hashes' column order when the snapshot's differs; every row is rewritten."""
    target = manifest.target
    hashed = schema_plan.hashed_columns(manifest)
    values = LoadValues(
        table_id=target.table_id, source_table=manifest.source_table, run_id=manifest.run_id,
        sequence=manifest.sequence, mode=manifest.mode, manifest_uri=manifest_uri, source_rows=manifest.row_count,
        bytes=sum(p.bytes for p in manifest.all_parts), extracted_at=manifest.extracted_at,
        base_run_id=manifest.delta.base_run_id if manifest.delta else None,
        key_columns=ledger.KEY_SEPARATOR.join(schema_plan.key_names(manifest)),
        hashed_columns=json.dumps(list(hashed)),
        message=(f"every row rewritten: the columns changed places since the last applied snapshot "
                 f"({', '.join(reordered)} -> {', '.join(hashed)})") if reordered else None,
    )
    if reordered:
        log.warning("%s: %s", target.table_id, values.message)
    script = load_script(
        manifest.table_schema,
        target=quote_bigquery(*target.table_id.split(".")),
        staging=quote_bigquery(*staged.rows.split(".")),
        ledger=ledger.quoted(target.project, target.dataset),
        values=values,
        deleted=quote_bigquery(*staged.deleted.split(".")) if staged.deleted else None,
        rewrite=bool(reordered),
        fault=faults.requested(faults.DURING_MERGE),
    )
    with locks.ledger(target.project, target.dataset):
        rows = bq.script(target.project, script)
    if not rows:
        raise RuntimeError(f"the load script of {target.table_id} returned no outcome")
    row = rows[-1]
    status = str(row["outcome"])
    if status == BASE_MISSING:
        raise BaseNotApplied(f"delta on run {values.base_run_id}, which is not applied yet")
    if status == BASE_SUPERSEDED:
        raise RefusedError(f"delta on run {values.base_run_id}, but the table has moved past it; a full snapshot is needed")
    if status == DUPLICATE_KEYS:
        raise RefusedError(_repeated_keys(manifest, staged.rows))
    if status == DIVERGED:
        raise RefusedError(f"applying run {manifest.run_id} would leave {row['rows_after']} rows in {target.table_id}, "
                           f"the manifest says {manifest.row_count}; rolled back (a full snapshot is needed)")
    if status == ledger.DUPLICATE:
        # Another delivery committed it while this one staged; that one publishes (or its redelivery does).
        return LoadOutcome(ledger.DUPLICATE)
    if status == ledger.STALE:
        return LoadOutcome(ledger.STALE, message="a newer snapshot was applied meanwhile")
    return LoadOutcome(status, int(row["rows_inserted"] or 0), int(row["rows_updated"] or 0),
                       int(row["rows_deleted"] or 0), needs_publish=True)


def _repeated_keys(manifest: Manifest, staging_table: str) -> str:
    """Why a snapshot whose staged rows hold a key twice is refused, with a few of the keys."""
    schema = manifest.table_schema
    repeated = repeated_keys_query(schema, quote_bigquery(*staging_table.split(".")))
    sample = bq.query(manifest.target.project, f"{repeated} LIMIT {_SHOWN_KEYS}")
    shown = "; ".join(", ".join(f"{c.bq_name}={row[c.bq_name]!r}" for c in schema.key_columns) for row in sample)
    return (f"the snapshot holds rows the source tells apart that land as one BigQuery key ({shown}), e.g. 1 and '1' "
            "in an untyped SQLite column or two spellings of one DATETIME; nothing was applied: make the source's "
            "keys distinct as values, or replicate a view that does")
