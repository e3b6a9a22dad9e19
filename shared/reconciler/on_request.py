"""Reconciling on request rather than after a load: Cloud Scheduler's deep checks and operators'.

A request naming one table is checked here and now. A request for several (or all) tables is fanned
out, one request per table back onto `reconcile-requests`, so each table gets its own invocation,
time limit and redeliveries. Each check compares the table with its newest applied snapshot and
repairs what differs as after a load: extra rows deleted, stale hashes re-stamped, differing keys
requested from the extractor again. Only what nothing repairs raises an alert."""
from __future__ import annotations

from dataclasses import dataclass

from google.cloud import bigquery

from shared import bigquery as bq
from shared import ledger, logs, pubsub, results
from shared.alerts import raise_alert
from shared.applied import SnapshotGone, latest_snapshot, ledger_exists
from shared.reconciler.certificate import Certificate
from shared.reconciler.options import from_environment
from shared.reconciler.reconcile import reconcile
from shared.reconciler.record import record, unrepaired
from shared.reconciler.request import ReconcileRequest
from shared.topology import RECONCILE_REQUESTS_TOPIC

log = logs.get(__name__)


@dataclass(frozen=True)
class Handled:
    certificates: list[Certificate]
    fanned_out: list[str]  # table ids a request of their own was published for
    unknown: list[str]     # names with no applied snapshot behind them


def handle_request(request: ReconcileRequest) -> Handled:
    tables, unknown = resolve(request)
    for name in unknown:
        raise_alert(request.pubsub_project, stage="reconciler", table=name, run_id=None,
                    reason=f"cannot reconcile {name}: no applied snapshot of it in {request.project}.{request.dataset}",
                    details={"kind": "reconcile-request", "requested_by": request.requested_by})
    if len(tables) > 1:
        for table_id in tables:
            pubsub.publish_json(request.pubsub_project, RECONCILE_REQUESTS_TOPIC, request.for_table(table_id).body())
        logs.event(log, f"reconcile request fanned out to {len(tables)} table(s)", tables=tables)
        return Handled([], tables, unknown)
    return Handled([check_table(request, table_id) for table_id in tables], [], unknown)


def applied_tables(project: str, dataset: str) -> dict[str, str]:
    """table id -> source table of every table with an applied snapshot."""
    if not ledger_exists(project, dataset):
        return {}
    rows = bq.query(project, f"SELECT table_id, ANY_VALUE(source_table) AS source_table "
                             f"FROM {ledger.quoted(project, dataset)} WHERE status = @status GROUP BY table_id",
                    [bigquery.ScalarQueryParameter("status", "STRING", ledger.APPLIED)])
    return {str(r["table_id"]): str(r["source_table"] or "") for r in rows}


def resolve(request: ReconcileRequest) -> tuple[list[str], list[str]]:
    """The table ids a request names (all applied ones when it names none), and the names that match
    none. A name matches a table's full id, its BigQuery name or its source name, in any case."""
    known = applied_tables(request.project, request.dataset)
    if not request.tables:
        return sorted(known), []
    found: list[str] = []
    unknown: list[str] = []
    for name in request.tables:
        wanted = name.casefold()
        matches = [t for t, source in known.items()
                   if wanted in (t.casefold(), t.split(".")[-1].casefold(), source.casefold())]
        if matches:
            found += [t for t in matches if t not in found]
        else:
            unknown.append(name)
    return sorted(found), unknown


def _check_against_snapshot(request: ReconcileRequest, table_id: str) -> Certificate:
    try:
        loaded = latest_snapshot(request.project, request.dataset, table_id)
    except SnapshotGone as gone:
        return Certificate(table_id, gone.run_id, verdict=results.UNVERIFIED, message=str(gone))
    if loaded is None:  # resolved a moment ago: an operator deleted its history meanwhile
        return Certificate(table_id, "", message="no applied snapshot to compare with")
    with logs.labels(run_id=loaded.manifest.run_id):
        return reconcile(loaded.manifest, from_environment(table_id, deep=request.deep),
                         manifest_uri=loaded.manifest_uri)


def check_table(request: ReconcileRequest, table_id: str) -> Certificate:
    """One table against its newest applied snapshot; the certificate is stored, and alerted when
    nothing repairs what it found."""
    with logs.labels(table=table_id):
        certificate = _check_against_snapshot(request, table_id)
        certificate.details.update(requested_by=request.requested_by, deep_requested=request.deep)
        with logs.labels(run_id=certificate.run_id or None):
            record(certificate, project=request.project, dataset=request.dataset,
                   pubsub_project=request.pubsub_project, alert=unrepaired(certificate))
        return certificate
