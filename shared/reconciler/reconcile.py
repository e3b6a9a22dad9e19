"""One reconciliation: count and fingerprint, and when they differ the exact differing keys, the
repairs and the re-extraction request, all written up as a replication certificate."""
from __future__ import annotations

import time

from shared import bq_jobs, logs, pubsub, results
from shared.bq_hash_sql import deep_hash_unavailable
from shared.manifest import Manifest
from shared.reconciler import diff as diffs
from shared.reconciler.certificate import Certificate
from shared.reconciler.fingerprint import compare_with_snapshot
from shared.reconciler.options import ReconcileOptions
from shared.schema import ROW_HASH_COLUMN
from shared.topology import DEPLOYMENT_FIELD, EXTRACT_REQUESTS_TOPIC, manifest_root

log = logs.get(__name__)


SUPERSEDED_MESSAGE = "a newer snapshot was applied before this check ran"


def reconcile(manifest: Manifest, options: ReconcileOptions | None = None, *,
              manifest_uri: str | None = None, only_if_latest: bool = False) -> Certificate:
    """Proves the table equal to the snapshot, or finds, repairs and requests what differs.
    `only_if_latest`: when the ledger, read in the same query as the table's fingerprint, names a
    newer applied snapshot, the certificate says `superseded` and nothing is diagnosed or repaired."""
    options = options or ReconcileOptions()
    started = time.monotonic()
    stats = bq_jobs.JobStats()
    target = manifest.target
    certificate = Certificate(target.table_id, manifest.run_id)
    deep = options.deep
    unavailable = deep_hash_unavailable(manifest.table_schema) if deep else None
    if unavailable:
        deep = False
        certificate.message = f"deep mode unavailable ({unavailable}); "
    certificate.mode = "deep" if deep else "fingerprint"
    try:
        comparison = compare_with_snapshot(manifest, deep=deep, with_ledger=only_if_latest, stats=stats)
        if comparison.superseded:
            certificate.verdict, certificate.message = results.SUPERSEDED, SUPERSEDED_MESSAGE
            return certificate
        certificate.source_rows, certificate.target_rows = comparison.source_rows, comparison.target_rows
        certificate.source_fingerprint = comparison.source_fingerprint
        certificate.target_fingerprint = comparison.target_fingerprint
        certificate.stale_hash_rows = comparison.stale_hash_rows
        if comparison.clean:
            certificate.verdict = results.MATCH
        else:
            _diagnose(manifest, manifest_uri, options, deep, certificate, stats)
    finally:
        certificate.bytes_processed, certificate.jobs = stats.bytes_processed, stats.jobs
        certificate.duration_s = round(time.monotonic() - started, 3)
    return certificate


def _diagnose(manifest: Manifest, manifest_uri: str | None, options: ReconcileOptions, deep: bool,
              certificate: Certificate, stats: bq_jobs.JobStats) -> None:
    certificate.verdict = results.MISMATCH
    try:
        diff = diffs.find_differences(manifest, deep=deep, stats=stats, manifest_uri=manifest_uri)
    except diffs.DiffUnavailable as error:
        certificate.message += f"{error}; "
        if options.repair:
            _request(manifest, certificate, keys=None, reason=f"reconciliation of {manifest.run_id}: {error}",
                     manifest_uri=manifest_uri)
        return
    try:
        certificate.missing_rows = diff.keys[diffs.MISSING]
        certificate.extra_rows = diff.keys[diffs.EXTRA]
        certificate.changed_rows = diff.keys[diffs.CHANGED]
        certificate.duplicate_rows = diff.keys[diffs.DUPLICATE]
        if options.sample_keys:
            certificate.details["keys"] = diffs.keys_of(manifest, diff, diffs.KINDS, options.sample_keys, stats)
        described = ", ".join(f"{n} {kind}" for kind, n in diff.keys.items() if n) or "no key differs"
        certificate.message += f"{described}; "
        if options.repair:
            _repair(manifest, manifest_uri, options, deep, diff, certificate, stats)
    finally:
        diffs.drop(diff)


def _repair(manifest: Manifest, manifest_uri: str | None, options: ReconcileOptions, deep: bool, diff: diffs.Diff,
            certificate: Certificate, stats: bq_jobs.JobStats) -> None:
    outcome = diffs.repair(manifest, diff, deep=deep, stats=stats)
    if not outcome.applied:
        certificate.verdict = results.SUPERSEDED
        certificate.message += "a newer snapshot was applied meanwhile: nothing repaired"
        return
    certificate.rows_deleted, certificate.rows_restamped = outcome.deleted, outcome.restamped
    if outcome.deleted:
        certificate.message += f"deleted {outcome.deleted} row(s); "
    if outcome.restamped:
        certificate.message += f"re-stamped {outcome.restamped} stale hash(es); "
    wanted = diff.to_request
    if not wanted:
        return
    reason = (f"reconciliation of {manifest.run_id}: "
              + ", ".join(f"{diff.keys[k]} {k}" for k in diffs.TO_REQUEST if diff.keys[k]))
    if wanted > options.max_repair_keys:
        _request(manifest, certificate, keys=None, reason=f"{reason} (more than {options.max_repair_keys} keys)",
                 manifest_uri=manifest_uri)
        return
    by_kind = diffs.keys_of(manifest, diff, diffs.TO_REQUEST, options.max_repair_keys, stats)
    keys = [key for kind in diffs.TO_REQUEST for key in by_kind[kind]]
    _request(manifest, certificate, keys=keys, reason=reason, manifest_uri=manifest_uri)


def repair_request_body(manifest: Manifest, manifest_uri: str | None, reason: str) -> dict[str, object]:
    """What every repair request says, naming the deployment whose snapshot it repairs: the one
    the manifest lives under, since deployments sharing a Pub/Sub project share the request topic."""
    body: dict[str, object] = {"table": manifest.source_table, "target": manifest.target.table_id,
                               "run_id": manifest.run_id, "reason": reason}
    root = manifest_root(manifest_uri) if manifest_uri else None
    if root is not None:
        body[DEPLOYMENT_FIELD] = root
    return body


def _request(manifest: Manifest, certificate: Certificate, *, keys: list[list[object]] | None, reason: str,
             manifest_uri: str | None = None) -> None:
    """Asks the extractor for these keys again, or (keys=None) for a full snapshot."""
    target = manifest.target
    body = repair_request_body(manifest, manifest_uri, reason)
    if keys is None:
        body |= {"full": True, "mode": "full"}
        certificate.full_snapshot_requested = True
        certificate.message += "requested a full snapshot; "
    else:
        schema = manifest.table_schema
        key_columns = [ROW_HASH_COLUMN] if schema.keyless else [c.bq_name for c in schema.key_columns]
        if not pubsub.fits(body | {"keys": keys, "key_columns": key_columns}):
            reason += f" ({len(keys)} keys are more than one Pub/Sub message holds)"
            _request(manifest, certificate, keys=None, reason=reason, manifest_uri=manifest_uri)
            return
        body |= {"keys": keys, "key_columns": key_columns}
        certificate.keys_requested = len(keys)
        certificate.message += f"requested {len(keys)} key(s) again; "
    message_id = pubsub.publish_json(target.pubsub_project, EXTRACT_REQUESTS_TOPIC, body)
    certificate.details["extract_request"] = {"message_id": message_id, "keys": len(keys) if keys else 0,
                                              "full": keys is None}
    logs.event(log, f"extract request for {manifest.source_table}: {reason}", message_id=message_id,
               keys=len(keys) if keys else 0, full=keys is None)
