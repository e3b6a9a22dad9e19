"""The loader function's body: event in, snapshot applied, `table-loaded` out.

Terminal problems (a manifest or schema that cannot be applied) are recorded in the ledger, alerted
and acknowledged by returning normally. Anything else raises, so Pub/Sub (or Eventarc) delivers the
event again, and after the subscription's maximum attempts dead-letters it.
"""
from __future__ import annotations

import datetime as dt
import posixpath

from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc

from shared import gcs, ledger, logs, pubsub
from shared.events import EventError, StorageObject, event_id, storage_object
from shared.loader import faults, index_pruning, locks, refusal, staging
from shared.loader.apply import LoadOutcome, apply_snapshot
from shared.loader.conflicts import retry_on_conflict
from shared.loader.errors import TransientError
from shared.manifest import Manifest, ManifestError, parse_manifest
from shared.topology import TABLE_LOADED_TOPIC

log = logs.get(__name__)


def handle_snapshot_event(event: CloudEvent) -> LoadOutcome | None:
    with logs.labels(event_id=event_id(event), stage="loader"):
        try:
            obj = storage_object(event)
        except EventError as error:
            log.error("ignored event: %s", error)
            return None
        if obj is None or not obj.is_manifest:
            log.debug("ignored %s", obj.name if obj else event["type"])
            return None
        return _handle_manifest(obj)


def _handle_manifest(obj: StorageObject) -> LoadOutcome | None:
    manifest_uri = gcs.uri(obj.bucket, obj.name)
    try:
        text = gcs.read(obj.bucket, obj.name)
    except gexc.NotFound:
        log.error("manifest %s (generation %s) no longer exists; nothing to load", manifest_uri, obj.generation)
        return None
    try:
        manifest = parse_manifest(text, bucket=obj.bucket, prefix=posixpath.dirname(obj.name))
    except ManifestError as error:
        refusal.refuse(refusal.of_text(text, manifest_uri, str(error)))
        return LoadOutcome(ledger.REFUSED, message=str(error))
    with logs.labels(run_id=manifest.run_id, table=manifest.target.table_id), locks.table(manifest.target.table_id):
        return _apply(manifest, manifest_uri)


def _apply(manifest: Manifest, manifest_uri: str) -> LoadOutcome:
    try:
        outcome = apply_snapshot(manifest, manifest_uri)
    except ManifestError as error:
        refusal.refuse(refusal.of_manifest(manifest, manifest_uri, str(error)))
        return LoadOutcome(ledger.REFUSED, message=str(error))
    except TransientError as error:
        log.warning("not loaded yet, the event will be delivered again: %s", error)
        raise
    except Exception as error:
        log.error("load failed, the event will be delivered again: %s: %s", type(error).__name__, error)
        raise
    try:
        _announce(manifest, manifest_uri, outcome)
    finally:
        staging.drop(outcome.staged)  # after publishing: dropping staging never delays the chain
    if outcome.needs_publish:
        index_pruning.prune_superseded(manifest, manifest_uri)  # after publishing: never delays the chain
    return outcome


def _announce(manifest: Manifest, manifest_uri: str, outcome: LoadOutcome) -> None:
    """A stale snapshot recorded as such; a committed one published."""
    if outcome.status == ledger.STALE:
        _record_stale(manifest, manifest_uri, outcome.message)
        return
    logs.event(log, f"{outcome.status} snapshot {manifest.run_id} to {manifest.target.table_id}: "
                    f"+{outcome.rows_inserted} ~{outcome.rows_updated} -{outcome.rows_deleted}",
               status=outcome.status, mode=manifest.mode, inserted=outcome.rows_inserted,
               updated=outcome.rows_updated, deleted=outcome.rows_deleted, seconds=outcome.seconds)
    if outcome.needs_publish:
        faults.inject(faults.BEFORE_PUBLISH)
        _publish_loaded(manifest, manifest_uri, outcome)


def _record_stale(manifest: Manifest, manifest_uri: str, message: str) -> None:
    target = manifest.target
    row: dict[str, object] = {
        "table_id": target.table_id, "source_table": manifest.source_table, "run_id": manifest.run_id,
        "sequence": manifest.sequence, "mode": manifest.mode, "status": ledger.STALE, "manifest_uri": manifest_uri,
        "source_rows": manifest.row_count, "extracted_at": manifest.extracted_at,
        "recorded_at": dt.datetime.now(dt.UTC), "message": message[:1000],
    }
    with locks.ledger(target.project, target.dataset):
        retry_on_conflict(lambda: ledger.record_once(target.project, target.dataset, row))
    log.warning("skipped stale snapshot %s of %s: %s", manifest.run_id, target.table_id, message)


def _publish_loaded(manifest: Manifest, manifest_uri: str, outcome: LoadOutcome) -> None:
    """After the commit, at least once: a crash before `published_at` is set publishes again."""
    target = manifest.target
    body = {
        "table": target.table_id, "source_table": manifest.source_table, "run_id": manifest.run_id,
        "sequence": manifest.sequence, "mode": manifest.mode, "manifest_uri": manifest_uri,
        "status": ledger.APPLIED, "rows_inserted": outcome.rows_inserted, "rows_updated": outcome.rows_updated,
        "rows_deleted": outcome.rows_deleted, "source_rows": manifest.row_count,
    }
    pubsub.publish_json(target.pubsub_project, TABLE_LOADED_TOPIC, body, ordering_key=target.table_id)
    with locks.ledger(target.project, target.dataset):
        retry_on_conflict(lambda: ledger.mark_published(target.project, target.dataset, target.table_id,
                                                        manifest.run_id))
