"""The reconciler function's body: prove the table equals the snapshot it was loaded from.

Every reconciliation writes its replication certificate to `_sync_reconciliations`. A table that
is not clean also raises an alert (stage ``reconciler``, ``"kind": "reconciled"``, the certificate's
numbers in the body) on the alerts topic; clean certificates are only stored, so the alerts topic
stays a list of things that need a look. The repairs themselves (deleted extras, extract requests)
are in the certificate.

A `table-loaded` message may carry ``"deep": true`` to ask for a deep check of that snapshot
(hashes rebuilt from the data), e.g. when an operator re-publishes one.
"""
from __future__ import annotations

import os

from cloudevents.http import CloudEvent

from shared import logs, results
from shared.alerts import raise_alert
from shared.events import EventError, event_id, pubsub_message
from shared.loaded_event import loaded_snapshot
from shared.manifest import ManifestError
from shared.reconciler.certificate import Certificate
from shared.reconciler.options import ENV_VARIABLE, OptionsError, ReconcileOptions, options_for
from shared.reconciler.reconcile import reconcile
from shared.topology import RECONCILIATION_TABLE

log = logs.get(__name__)


def _options(table_id: str) -> ReconcileOptions:
    """The table's options; a broken options document is logged and the defaults are used, so a
    configuration slip never turns every table-loaded message into a poison message."""
    try:
        return options_for(table_id, os.environ.get(ENV_VARIABLE))
    except OptionsError as error:
        log.error("using default reconcile options: %s", error)
        return ReconcileOptions()


def handle_table_loaded(event: CloudEvent, options: ReconcileOptions | None = None) -> str | None:
    with logs.labels(event_id=event_id(event), stage="reconciler"):
        try:
            loaded = loaded_snapshot(event)
            deep_requested = pubsub_message(event).data.get("deep") is True
        except (EventError, ManifestError) as error:
            log.error("ignored table-loaded event: %s", error)
            return None
        manifest = loaded.manifest
        target = manifest.target
        with logs.labels(run_id=manifest.run_id, table=target.table_id):
            chosen = options or _options(target.table_id)
            if deep_requested:
                chosen = chosen.model_copy(update={"deep": True})
            if not loaded.is_latest:
                certificate = Certificate(target.table_id, manifest.run_id, verdict=results.SUPERSEDED,
                                          message="a newer snapshot was applied before this check ran")
            else:
                certificate = reconcile(manifest, chosen)
            results.write(target.project, target.dataset, RECONCILIATION_TABLE, [certificate.row()])
            logs.event(log, f"reconciliation of {target.table_id} at {manifest.run_id}: {certificate.verdict}",
                       certificate=certificate.summary())
            if certificate.verdict == results.MISMATCH:
                raise_alert(target.pubsub_project, stage="reconciler", table=target.table_id,
                            run_id=manifest.run_id, reason=f"table differs from snapshot: {certificate.message}",
                            details={"kind": "reconciled", **{k: v for k, v in certificate.summary().items()
                                                              if k not in ("message", "table_id", "run_id")}})
            return certificate.verdict
