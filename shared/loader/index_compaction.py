"""The whole key index after a delta, written by the loader in the cloud while the MERGE runs.

A delta ships only its index patch (`shared.key_index`), so the extractor uploads a few percent of
what a whole index weighs. The loader merges the base's index with the patch and the deleted keys
(`shared.loader.index_merge`) into `_index/compacted-<attempt>-NNNNN.compacted.parquet` beside the
delta's manifest, checks it holds exactly the snapshot's row count, and writes the listing,
`_index/compacted.json`, last and only once. A redelivered event finds the listing and is done.
The parts' suffix (`key_index.COMPACTED_PART_SUFFIX`) is what the loader's IAM condition lets it
delete once two newer snapshots are applied (`shared.loader.index_pruning`).

Failures are told apart: an index that cannot be had or does not fit (`IndexUnavailable`) only
costs the next extraction a full snapshot, so the load goes on; anything else (GCS or BigQuery
unreachable) makes the event be delivered again, and the redelivery, finding the delta applied but
not yet announced, compacts before it publishes.
"""
from __future__ import annotations

import contextvars
import posixpath
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
from google.api_core import exceptions as gexc

from shared import gcs, key_index, ledger, logs, parquet_parts
from shared.key_index import CompactedIndex, IndexUnavailable, KeyIndex
from shared.loader.index_merge import IndexMergeError, apply_patch
from shared.manifest import Manifest, ManifestError, Part, parse_manifest
from shared.raw_hash import RAW_HASH_COLUMN
from shared.schema import KEY_HASH_COLUMN

log = logs.get(__name__)
PART_ROWS = 250_000


def compact(manifest: Manifest, manifest_uri: str) -> CompactedIndex | None:
    """Writes (or finds already written) the delta's whole key index; None for a snapshot that
    ships its index whole."""
    if not key_index.ships_patch(manifest):
        return None
    written = key_index.read_listing(manifest, manifest_uri)
    if written is not None:
        return written
    started = time.monotonic()
    base = _base_index(manifest)
    raw_hash = manifest.index_raw_hash if base.raw_hash == manifest.index_raw_hash else None
    schema = key_index.index_schema(manifest.table_schema)
    if raw_hash is None:  # raw hashes of another kind: left out here, null in the compacted parts
        schema = schema.remove(schema.get_field_index(RAW_HASH_COLUMN))
    keys = [c.bq_name for c in manifest.table_schema.key_columns]
    assert manifest.delta is not None
    merged = apply_patch(key_index.read_batches(base.parts, schema.names),
                         key_index.read_batches(manifest.delta.index_patch_parts, schema.names),
                         key_index.read_batches(manifest.delta.deleted_parts, [*keys, KEY_HASH_COLUMN]), keys, schema)
    bucket, manifest_name = gcs.split_uri(manifest_uri)
    # named per attempt: objects are only ever created, so an attempt cut short leaves no half-written
    # name a later one would have to overwrite
    prefix = f"{posixpath.dirname(manifest_name)}/_index/compacted-{secrets.token_hex(3)}-"
    try:
        parts = _write_parts(_with_raw_column(merged, raw_hash is not None), bucket, prefix)
    except (IndexMergeError, pa.ArrowInvalid) as error:
        raise IndexUnavailable(f"the index patch of {manifest.run_id} does not fit its base's index: {error}") from None
    except gexc.NotFound as error:
        raise IndexUnavailable(f"the base index of {manifest.run_id} is gone: {error.message}") from None
    rows = sum(p.rows for p in parts)
    if rows != manifest.row_count:
        raise IndexUnavailable(f"the compacted index of {manifest.run_id} holds {rows} rows, the snapshot "
                               f"{manifest.row_count}")
    listing = CompactedIndex(run_id=manifest.run_id, rows=rows, raw_hash=raw_hash, parts=parts)
    listing_bucket, listing_name = key_index.listing_location(manifest_uri)
    try:
        gcs.upload(listing_bucket, listing_name, listing.model_dump_json(indent=2).encode(), "application/json",
                   only_if_new=True)
    except gexc.PreconditionFailed:  # another delivery listed its own, equal index first
        return key_index.read_listing(manifest, manifest_uri)
    logs.event(log, f"compacted the key index of {manifest.run_id}: {rows} rows in {len(parts)} part(s)",
               rows=rows, parts=len(parts), bytes=sum(p.bytes for p in parts),
               seconds=round(time.monotonic() - started, 3))
    return listing


def _base_index(manifest: Manifest) -> KeyIndex:
    assert manifest.delta is not None
    target, base_run = manifest.target, manifest.delta.base_run_id
    row = ledger.applied_run(target.project, target.dataset, target.table_id, base_run)
    if row is None or not row.get("manifest_uri"):
        raise IndexUnavailable(f"the base run {base_run} is not in the ledger as applied")
    base_uri = str(row["manifest_uri"])
    bucket, name = gcs.split_uri(base_uri)
    try:
        text = gcs.read(bucket, name)
    except gexc.NotFound:
        raise IndexUnavailable(f"the manifest of the base run {base_run} is gone") from None
    try:
        base = parse_manifest(text, bucket=bucket, prefix=posixpath.dirname(name))
    except ManifestError as error:
        raise IndexUnavailable(f"the manifest of the base run {base_run} cannot be read: {error}") from None
    return key_index.of_snapshot(base, base_uri)


def _with_raw_column(tables: Iterator[pa.Table], raw_hash: bool) -> Iterator[pa.Table]:
    """Every compacted part has the index's columns; raw hashes computed another way are left out."""
    for table in tables:
        yield table if raw_hash else table.append_column(
            pa.field(RAW_HASH_COLUMN, pa.int64()), pa.nulls(table.num_rows, pa.int64()))


def _write_parts(tables: Iterator[pa.Table], bucket: str, prefix: str) -> list[Part]:
    parts: list[Part] = []
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:
        table = pa.concat_tables(pending)
        stored = gcs.upload(bucket, f"{prefix}{len(parts):05d}{key_index.COMPACTED_PART_SUFFIX}",
                            parquet_parts.encode(table), parquet_parts.CONTENT_TYPE)
        parts.append(Part(uri=stored.uri, rows=table.num_rows, bytes=stored.size, md5=stored.md5))

    for table in tables:
        pending.append(table)
        pending_rows += table.num_rows
        if pending_rows >= PART_ROWS:
            flush()
            pending, pending_rows = [], 0
    if pending_rows:
        flush()
    return parts


class Compaction:
    """A delta's compaction on a thread beside the load; nothing for any other snapshot."""

    def __init__(self, manifest: Manifest, manifest_uri: str) -> None:
        self._manifest = manifest
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[CompactedIndex | None] | None = None
        if key_index.ships_patch(manifest):
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-compaction")
            # run in a copy of this context, so its log lines carry the event's labels
            self._future = self._pool.submit(contextvars.copy_context().run, compact, manifest, manifest_uri)

    def finish(self, *, committed: bool) -> None:
        """Waits for it (nothing outlives the event). Its failure matters only if the load
        committed: then an unreachable service raises (the event comes again), while an index
        that cannot be had is told and left to the next extraction's full snapshot."""
        if self._future is None or self._pool is None:
            return
        error = self._future.exception()
        self._pool.shutdown(wait=True)
        if error is None or not committed:
            return
        if not isinstance(error, IndexUnavailable):
            raise error
        _without_index(self._manifest, error)


def ensure(manifest: Manifest, manifest_uri: str) -> None:
    """For a redelivered, already applied delta: its index compacted before it is announced."""
    try:
        compact(manifest, manifest_uri)
    except IndexUnavailable as error:
        _without_index(manifest, error)


def _without_index(manifest: Manifest, error: IndexUnavailable) -> None:
    log.warning("no key index after %s, the next extraction will be a full snapshot: %s", manifest.run_id, error)
