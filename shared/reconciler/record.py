"""Where a certificate goes: `_sync_reconciliations` always, the log, and the alerts topic when a
person has to look."""
from __future__ import annotations

from shared import logs, results
from shared.alerts import raise_alert
from shared.reconciler.certificate import Certificate
from shared.topology import RECONCILIATION_TABLE

log = logs.get(__name__)


def record(certificate: Certificate, *, project: str, dataset: str, pubsub_project: str, alert: str | None) -> None:
    """Stores the certificate; `alert` (the reason) also raises an alert with its numbers."""
    results.write(project, dataset, RECONCILIATION_TABLE, [certificate.row()])
    logs.event(log, f"reconciliation ({certificate.mode}) of {certificate.table_id} at {certificate.run_id}: "
                    f"{certificate.verdict}", certificate=certificate.summary())
    if alert:
        raise_alert(pubsub_project, stage="reconciler", table=certificate.table_id, run_id=certificate.run_id,
                    reason=alert, details={"kind": "reconciled", **{k: v for k, v in certificate.summary().items()
                                                                   if k not in ("message", "table_id", "run_id")}})


def unrepaired(certificate: Certificate) -> str | None:
    """Why a certificate needs a person, when nothing already on its way will fix the table: a
    mismatch with no row deleted or re-stamped and no snapshot requested, or a deep check that
    could not run deep, or a table with no snapshot left to check against."""
    if certificate.verdict == results.UNVERIFIED:
        return f"table cannot be checked: {certificate.message}"
    if certificate.details.get("deep_requested") and certificate.mode != "deep":
        return f"deep check not possible: {certificate.message}"
    repaired = (certificate.rows_deleted or certificate.rows_restamped or certificate.keys_requested
                or certificate.full_snapshot_requested)
    if certificate.verdict == results.MISMATCH and not repaired:
        return f"table differs from snapshot and nothing repairs it: {certificate.message}"
    return None
