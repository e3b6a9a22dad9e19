"""A snapshot's key index: key columns, `_key_hash`, `_row_hash` and `_raw_hash` of every row the
table holds after it, in key order. The next delta merge-joins against it; the reconciler diffs
BigQuery with it.

A full snapshot ships its index (`Manifest.index_parts`). A delta ships only the entries of the rows
it ships (`Delta.index_patch_parts`): the loader, in the cloud, writes the whole index after it
(`shared.loader.index_compaction`) beside the manifest and lists it last, in `_index/compacted.json`.
Until that listing exists the delta has no index to build on, and the next extraction is full. Once
two newer snapshots are applied the loader deletes those parts (`shared.loader.index_pruning`) and
keeps the listing: a listing whose parts are gone reads as no index at all.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core import exceptions as gexc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import gcs
from shared.clients import storage_client
from shared.manifest import Manifest, Part
from shared.raw_hash import RAW_HASH_COLUMN
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.types import arrow_type

COMPACTED_LISTING = "_index/compacted.json"
# How every compacted part's name ends: the only objects the loader may delete (its IAM condition)
COMPACTED_PART_SUFFIX = ".compacted.parquet"
READ_BATCH_ROWS = 50_000
_CHECKS_AT_ONCE = 8


class IndexUnavailable(RuntimeError):
    """The snapshot's whole key index cannot be had (not written yet, or gone)."""


class IndexDamaged(IndexUnavailable):
    """A part of the index is gone or no longer holds what was written."""


class CompactedIndex(BaseModel):
    """The listing of a delta's whole key index, written by the loader after the index itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    run_id: str
    rows: int = Field(ge=0)
    raw_hash: str | None = Field(description="how _raw_hash was computed (shared.raw_hash.tag()); None: not usable")
    parts: list[Part]


@dataclass(frozen=True)
class KeyIndex:
    """Where a snapshot's whole key index is, and how its raw hashes were computed."""

    parts: list[Part]
    raw_hash: str | None
    raw_hash_column: bool  # the parts have a _raw_hash column (null where raw_hash is None)


def index_schema(schema: TableSchema) -> pa.Schema:
    """Key columns, both hashes and the raw hash: what the next delta joins against."""
    keys = [pa.field(c.bq_name, arrow_type(c.bq_type), nullable=False) for c in schema.key_columns]
    hashes = [pa.field(name, pa.string(), nullable=False) for name in (KEY_HASH_COLUMN, ROW_HASH_COLUMN)]
    return pa.schema([*keys, *hashes, pa.field(RAW_HASH_COLUMN, pa.int64())])


def ships_patch(manifest: Manifest) -> bool:
    """A delta whose index is to be compacted in the cloud (a delta of an older extractor shipped it whole)."""
    return manifest.delta is not None and not manifest.index_parts


def listing_location(manifest_uri: str) -> tuple[str, str]:
    bucket, name = gcs.split_uri(manifest_uri)
    return bucket, f"{posixpath.dirname(name)}/{COMPACTED_LISTING}"


def read_listing(manifest: Manifest, manifest_uri: str) -> CompactedIndex | None:
    """The delta's compacted index listing, None when there is none (yet). A listing that is not this
    run's, or lists objects outside its folder, is not trusted: a full snapshot is safer."""
    return listing_of(manifest.run_id, manifest_uri)


def listing_of(run_id: str, manifest_uri: str) -> CompactedIndex | None:
    """read_listing for a run known by its id and manifest location only (its manifest unread)."""
    bucket, name = listing_location(manifest_uri)
    try:
        text = gcs.read(bucket, name)
    except gexc.NotFound:
        return None
    try:
        listing = CompactedIndex.model_validate_json(text)
    except ValidationError as error:
        raise IndexUnavailable(f"{gcs.uri(bucket, name)} is not a compacted index listing: "
                               f"{error.errors()[0]['msg']}") from None
    folder = gcs.uri(bucket, posixpath.dirname(name)) + "/"
    if listing.run_id != run_id or not all(p.uri.startswith(folder) for p in listing.parts):
        raise IndexUnavailable(f"{gcs.uri(bucket, name)} does not describe run {run_id}")
    return listing


def of_snapshot(manifest: Manifest, manifest_uri: str) -> KeyIndex:
    """The whole key index after this snapshot; a delta's compacted parts checked to be there as
    written (`require_intact`), a full snapshot's left to the caller."""
    if not ships_patch(manifest):
        if not manifest.index_parts:
            raise IndexUnavailable(f"snapshot {manifest.run_id} was written without a key index")
        return KeyIndex(manifest.index_parts, manifest.index_raw_hash, manifest.index_raw_hash is not None)
    listing = read_listing(manifest, manifest_uri)
    if listing is None:
        raise IndexUnavailable(f"delta {manifest.run_id} has no compacted key index (the loader writes it "
                               "when it applies the delta)")
    require_intact(listing.run_id, "compacted key index", listing.parts)
    return KeyIndex(listing.parts, listing.raw_hash, raw_hash_column=True)


def require_intact(run_id: str, what: str, parts: Sequence[Part]) -> None:
    """An index outlives its parts (pruned once superseded, or past the bucket's retention), and a
    part can be overwritten: checked here, by metadata, rather than found out halfway through
    streaming them, where every later extraction would fail the same way."""
    with ThreadPoolExecutor(_CHECKS_AT_ONCE, thread_name_prefix="index-check") as pool:
        found = list(pool.map(gcs.info, [p.uri for p in parts]))
    for part, info in zip(parts, found, strict=True):
        if info is None:
            raise IndexDamaged(f"the {what} of {run_id} is gone ({part.uri}: pruned once superseded, or past "
                               "the bucket's retention)")
        if (info.size, info.md5) != (part.bytes, part.md5):
            raise IndexDamaged(f"the {what} of {run_id} was changed after it was written ({part.uri}: "
                               f"{info.size} bytes, MD5 {info.md5}; written as {part.bytes} bytes, MD5 {part.md5})")


def read_batches(parts: Sequence[Part], columns: Sequence[str],
                 batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The named columns of the parts, in order, a batch at a time (streamed, never a whole part)."""
    for part in parts:
        bucket, name = gcs.split_uri(part.uri)
        with storage_client().bucket(bucket).blob(name).open("rb") as stream:
            yield from pq.ParquetFile(stream).iter_batches(batch_size=batch_rows, columns=list(columns))
