"""The loader function's body: event in, snapshot applied, `table-loaded` out.

Terminal problems (a manifest that cannot be applied) are recorded in the ledger, alerted and
acknowledged; anything else raises so that Pub/Sub redelivers (and, in the end, dead-letters).
"""
from __future__ import annotations

import datetime as dt
import posixpath

from cloudevents.http import CloudEvent

from shared import gcs, ledger, logs, pubsub
from shared.alerts import raise_alert
from shared.events import EventError, event_id, storage_object
from shared.loader.apply import LoadOutcome, apply_snapshot
from shared.manifest import Manifest, ManifestError, parse_manifest
from shared.topology import MANIFEST_NAME, TABLE_LOADED_TOPIC

log = logs.get(__name__)


def handle_snapshot_event(event: CloudEvent) -> LoadOutcome | None:
    with logs.labels(event_id=event_id(event), stage="loader"):
        try:
            obj = storage_object(event)
        except EventError as error:
            log.error("ignored event: %s", error)
            return None
        if obj is None or posixpath.basename(obj.name) != MANIFEST_NAME:
            return None
        manifest_uri = gcs.uri(obj.bucket, obj.name)
        manifest = _read_manifest(obj.bucket, obj.name)
        if manifest is None:
            return None
        with logs.labels(run_id=manifest.run_id, table=manifest.target.table_id):
            return _apply(manifest, manifest_uri)


def _read_manifest(bucket: str, name: str) -> Manifest | None:
    try:
        return parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=posixpath.dirname(name))
    except ManifestError as error:
        # Without a readable manifest there is no trusted target to record against: log and alert only.
        log.error("refused manifest gs://%s/%s: %s", bucket, name, error)
        return None


def _apply(manifest: Manifest, manifest_uri: str) -> LoadOutcome:
    target = manifest.target
    try:
        outcome = apply_snapshot(manifest, manifest_uri)
    except ManifestError as error:
        _record(manifest, manifest_uri, ledger.REFUSED, str(error))
        raise_alert(target.pubsub_project, stage="loader", table=target.table_id, run_id=manifest.run_id,
                    reason=str(error))
        return LoadOutcome(ledger.REFUSED)
    if outcome.status == ledger.STALE:
        _record(manifest, manifest_uri, ledger.STALE, "a newer snapshot is already applied")
        log.warning("skipped stale snapshot %s of %s", manifest.run_id, target.table_id)
        return outcome
    logs.event(log, f"{outcome.status} snapshot {manifest.run_id} to {target.table_id}: "
                    f"+{outcome.rows_inserted} ~{outcome.rows_updated} -{outcome.rows_deleted}",
               status=outcome.status, inserted=outcome.rows_inserted, updated=outcome.rows_updated,
               deleted=outcome.rows_deleted, seconds=outcome.seconds)
    # Published for duplicates too: the first delivery may have died between commit and publish.
    _publish_loaded(manifest, manifest_uri, outcome)
    return outcome


def _record(manifest: Manifest, manifest_uri: str, status: str, message: str) -> None:
    target = manifest.target
    ledger.record(target.project, target.dataset, {
        "table_id": target.table_id, "source_table": manifest.source_table, "run_id": manifest.run_id,
        "sequence": manifest.sequence, "mode": manifest.mode, "status": status, "manifest_uri": manifest_uri,
        "source_rows": manifest.row_count, "extracted_at": manifest.extracted_at,
        "recorded_at": dt.datetime.now(dt.UTC), "message": message[:1000],
    })


def _publish_loaded(manifest: Manifest, manifest_uri: str, outcome: LoadOutcome) -> None:
    target = manifest.target
    body = {
        "table": target.table_id, "source_table": manifest.source_table, "run_id": manifest.run_id,
        "sequence": manifest.sequence, "manifest_uri": manifest_uri, "status": outcome.status,
        "rows_inserted": outcome.rows_inserted, "rows_updated": outcome.rows_updated,
        "rows_deleted": outcome.rows_deleted, "source_rows": manifest.row_count,
    }
    pubsub.publish_json(target.pubsub_project, TABLE_LOADED_TOPIC, body, ordering_key=target.table_id)
