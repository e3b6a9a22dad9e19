"""Deleting the compacted key indexes nobody reads again.

Every applied delta gets its whole key index written beside its manifest (`index_compaction`, about
84 bytes a row), and only the newest applied snapshot's is ever read again: by the next delta as
its base and by the reconciler of the newest run (the loader refuses a delta on an older base; the
reconciler marks an older run `superseded` unread). An extraction that began before the newest was
applied may still be reading the one before. So once a snapshot S is applied and announced, the
compacted parts of the applied delta runs older than P, the newest applied run before S, are
deleted: S's and P's stay. At most WINDOW such runs are looked at per load (steady state: one has
parts left), so the end of a chain before a full snapshot and a crash's leftovers are caught by the
next loads, anything older by the bucket's lifecycle rule.

Only parts whose names end with `key_index.COMPACTED_PART_SUFFIX` are deleted (all the loader's IAM
condition admits); manifests, data parts, index patches, deleted keys, full snapshots' indexes and
the `_index/compacted.json` listings stay. Pruning never fails a load: an error is one warning and
the load's outcome stands.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import gcs, key_index, ledger, logs
from shared.manifest import Manifest

log = logs.get(__name__)
WINDOW = 3
DELTA = "delta"


@dataclass(frozen=True)
class AppliedRun:
    run_id: str
    sequence: int
    mode: str
    manifest_uri: str


def superseded(older: Sequence[AppliedRun], window: int = WINDOW) -> list[AppliedRun]:
    """Of the applied runs older than S, newest first, the delta runs whose indexes nobody reads
    again: those older than the first one (P, kept), at most `window` of them."""
    if not older:
        return []
    kept = older[0]
    return [r for r in older[1:] if r.mode == DELTA and r.sequence < kept.sequence and r.run_id != kept.run_id
            and r.manifest_uri][:window]


def prune_superseded(manifest: Manifest, manifest_uri: str) -> None:
    """After S (`manifest`) is applied and announced: deletes the superseded compacted indexes of its
    table. Never raises."""
    if manifest.table_schema.keyless:  # always full: no delta, no compacted index
        return
    try:
        if not _index_listed(manifest, manifest_uri):
            return
        runs = superseded(_applied_before(manifest))
    except Exception as error:  # the load stands whatever happens here
        log.warning("superseded key indexes of %s not pruned after run %s: %s: %s", manifest.target.table_id,
                    manifest.run_id, type(error).__name__, error)
        return
    for run in runs:
        try:
            _prune_run(run)
        except Exception as error:  # likely the same for the next runs (403, GCS unreachable): stop here
            log.warning("key index of run %s not pruned after run %s: %s: %s", run.run_id, manifest.run_id,
                        type(error).__name__, error)
            return


def _index_listed(manifest: Manifest, manifest_uri: str) -> bool:
    """S's own index is there: a full snapshot's ships with it, a delta's is listed once compacted."""
    if not key_index.ships_patch(manifest):
        return True
    try:
        return key_index.read_listing(manifest, manifest_uri) is not None
    except key_index.IndexUnavailable:
        return False


def _applied_before(manifest: Manifest) -> list[AppliedRun]:
    target = manifest.target
    rows = ledger.applied_before(target.project, target.dataset, target.table_id, manifest.sequence, WINDOW)
    return [AppliedRun(str(r["run_id"]), int(r["sequence"] or 0), str(r["mode"] or ""), str(r["manifest_uri"] or ""))
            for r in rows if r["run_id"] != manifest.run_id]


def _prune_run(run: AppliedRun) -> None:
    try:
        listing = key_index.listing_of(run.run_id, run.manifest_uri)
    except key_index.IndexUnavailable as error:
        log.info("key index of run %s left to the bucket's lifecycle rule: %s", run.run_id, error)
        return
    if listing is None:  # never compacted, or shipped whole by an older extractor
        return
    # deleted now; False: another name (written before pruning) or pruned by an earlier load
    deleted = [p for p in listing.parts if gcs.delete_with_suffix(p.uri, key_index.COMPACTED_PART_SUFFIX)]
    older_named = sum(1 for p in listing.parts if not p.uri.endswith(key_index.COMPACTED_PART_SUFFIX))
    if older_named:
        log.info("%d part(s) of the key index of run %s are named without %s (written before pruning): left to "
                 "the bucket's lifecycle rule", older_named, run.run_id, key_index.COMPACTED_PART_SUFFIX)
    if deleted:
        logs.event(log, f"pruned the superseded key index of run {run.run_id}: {len(deleted)} part(s)",
                   run=run.run_id, parts=len(deleted), bytes=sum(p.bytes for p in deleted))
