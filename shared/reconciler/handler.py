"""The reconciler function's body: prove the table equals the snapshot it was loaded from.

Every reconciliation writes its replication certificate to `_sync_reconciliations`. After a load, a
table that is not clean also raises an alert (stage ``reconciler``, ``"kind": "reconciled"``, the
certificate's numbers in the body) on the alerts topic; clean certificates are only stored, so the
alerts topic stays a list of things that need a look. The repairs themselves (deleted extras,
extract requests) are in the certificate.

A `table-loaded` message may carry ``"deep": true`` to ask for a deep check of that snapshot
(hashes rebuilt from the data), e.g. when an operator re-publishes one. The same entry point takes
reconcile requests from `reconcile-requests` (Cloud Scheduler's deep checks,
`shared.reconciler.on_request`), told apart by their ``"request": "reconcile"``.
"""
from __future__ import annotations

from cloudevents.http import CloudEvent

from shared import logs, results
from shared.events import EventError, Message, event_id, meant_for_another, pubsub_message
from shared.loaded_event import loaded_snapshot
from shared.manifest import ManifestError
from shared.reconciler.on_request import Handled, handle_request
from shared.reconciler.options import ReconcileOptions, from_environment
from shared.reconciler.reconcile import reconcile
from shared.reconciler.record import record
from shared.reconciler.request import RequestError, is_request, parse_request

log = logs.get(__name__)


def handle_table_loaded(event: CloudEvent, options: ReconcileOptions | None = None) -> str | None:
    with logs.labels(event_id=event_id(event), stage="reconciler"):
        if meant_for_another(event, "reconciler"):
            log.info("ignored a dead letter sent again for another function")
            return None
        try:
            message = pubsub_message(event)
        except EventError as error:
            log.error("ignored event: %s", error)
            return None
        if is_request(message.data):
            handled = _request(message)
            return ",".join(c.verdict for c in handled.certificates) if handled else None
        return _loaded(event, message, options)


def _request(message: Message) -> Handled | None:
    try:
        request = parse_request(message.data)
    except RequestError as error:
        log.error("ignored reconcile request: %s", error)
        return None
    with logs.labels(requested_by=request.requested_by):
        return handle_request(request)


def _loaded(event: CloudEvent, message: Message, options: ReconcileOptions | None) -> str | None:
    try:
        loaded = loaded_snapshot(event)
    except (EventError, ManifestError) as error:
        log.error("ignored table-loaded event: %s", error)
        return None
    deep_requested = message.data.get("deep") is True
    manifest = loaded.manifest
    target = manifest.target
    with logs.labels(run_id=manifest.run_id, table=target.table_id):
        chosen = options or from_environment(target.table_id)
        if deep_requested:
            chosen = chosen.model_copy(update={"deep": True})
        # the ledger is read in the fingerprint's query: a newer applied snapshot makes it `superseded`
        certificate = reconcile(manifest, chosen, manifest_uri=loaded.manifest_uri, only_if_latest=True)
        mismatch = certificate.verdict == results.MISMATCH
        record(certificate, project=target.project, dataset=target.dataset, pubsub_project=target.pubsub_project,
               alert=f"table differs from snapshot: {certificate.message}" if mismatch else None)
        return certificate.verdict
