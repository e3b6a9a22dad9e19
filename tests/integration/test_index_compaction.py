"""A delta ships only its index patch; the loader writes the whole key index after it, in the cloud
(fake GCS -> notification -> Pub/Sub push -> loader server, as in production)."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import gcs, key_index
from shared.clients import storage_client
from shared.identifiers import quote_bigquery
from shared.loader import index_compaction
from shared.manifest import Part
from shared.reconciler.options import ReconcileOptions
from shared.reconciler.reconcile import reconcile
from tests.integration.test_loader_delta import changed
from tests.integration.test_loader_support import (
    Place,
    Snapshot,
    Writer,
    log_messages,
    rows_for,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.stack


def _read(parts: list[Part]) -> pa.Table:
    tables = []
    for part in parts:
        bucket, name = gcs.split_uri(part.uri)
        tables.append(pq.read_table(pa.BufferReader(gcs.read(bucket, name))))
    return pa.concat_tables(tables)


def _compacted(snapshot: Snapshot) -> key_index.CompactedIndex:
    return wait_for(lambda: key_index.read_listing(snapshot.manifest, snapshot.manifest_uri), 30,
                    f"the compacted index of {snapshot.run_id}")


def _applied(snapshot: Snapshot, raw: dict[str, Any] | None = None) -> None:
    """Publishes the snapshot (as `raw`, if given) and waits for the loader server to apply it."""
    snapshot.publish(raw)
    wait_for_status(snapshot, "applied")


def _index_after(writer: Writer, snapshot: Snapshot) -> pa.Table:
    return writer.index_table(writer._hashed(list(snapshot.rows.values())))


def test_the_loader_writes_each_deltas_whole_index_and_the_next_delta_builds_on_it(
        stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "items")
    base = writer.full(rows_for(5, 40), sequence=1, index=True)
    _applied(base)
    first = writer.delta(base, changed(rows_for(5, 40)), sequence=2, index=True)
    assert first.manifest.delta.index_patch_parts[0].rows == 3 and not first.manifest.index_parts
    _applied(first)
    listing = _compacted(first)
    assert listing.rows == first.manifest.row_count == 41
    assert _read(listing.parts).equals(_index_after(writer, first))

    # the second delta's base is the first: its index is the compacted one
    rows = [r for r in first.rows.values() if r[0] not in (1, 40)] + [(0, "zero", None), (200, "two hundred", None)]
    second = writer.delta(first, rows, sequence=3, index=True)
    _applied(second)
    assert _read(_compacted(second).parts).equals(_index_after(writer, second))
    assert key_index.of_snapshot(second.manifest, second.manifest_uri).parts == _compacted(second).parts

    # a redelivered delta, applied but not yet announced, writes a lost index again before publishing
    bucket, listing_name = key_index.listing_location(second.manifest_uri)
    storage_client().bucket(bucket).blob(listing_name).delete()
    assert key_index.read_listing(second.manifest, second.manifest_uri) is None
    index_compaction.ensure(second.manifest, second.manifest_uri)
    assert _read(_compacted(second).parts).equals(_index_after(writer, second))


def test_the_reconciler_names_a_deltas_differing_keys_from_its_compacted_index(
        stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "audited")
    base = writer.full(rows_for(8, 30), sequence=1, index=True)
    _applied(base)
    delta = writer.delta(base, changed(rows_for(8, 30)), sequence=2, index=True)
    _applied(delta)
    _compacted(delta)
    table = quote_bigquery(*place.table_id("audited").split("."))
    bq.query(place.project, f"DELETE FROM {table} WHERE id IN (5, 101)")  # one old key, one the delta inserted

    options = ReconcileOptions(repair=False)
    certificate = reconcile(delta.manifest, options, manifest_uri=delta.manifest_uri)
    assert (certificate.verdict, certificate.missing_rows, certificate.extra_rows) == ("mismatch", 2, 0)
    assert sorted(certificate.details["keys"]["missing"]) == [[5], [101]]
    blind = reconcile(delta.manifest, options)  # without its location, a delta's index cannot be found
    assert blind.missing_rows == 0 and "no manifest location" in blind.message


def test_a_delta_whose_base_has_no_index_is_applied_and_leaves_no_index(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "plain")
    base = writer.full(rows_for(6, 10), sequence=1)  # without an index: nothing to build on
    _applied(base)
    delta = writer.delta(base, changed(rows_for(6, 10)), sequence=2, index=True)
    _applied(delta)
    wait_for(lambda: any("next extraction will be a full snapshot" in m
                         for m in log_messages(stack, run_id=delta.run_id)), 30, "the loader's warning")
    assert key_index.read_listing(delta.manifest, delta.manifest_uri) is None
    with pytest.raises(key_index.IndexUnavailable, match="no compacted key index"):
        key_index.of_snapshot(delta.manifest, delta.manifest_uri)


def test_raw_hashes_of_another_kind_are_left_out_of_the_compacted_index(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "rawless")
    base = writer.full(rows_for(7, 12), sequence=1, index=True)
    raw = base.raw()
    del raw["index_raw_hash"]  # as a base written before raw hashes, or by another DuckDB version
    _applied(base, raw)
    delta = writer.delta(base, changed(rows_for(7, 12)), sequence=2, index=True)
    _applied(delta)
    listing = _compacted(delta)
    assert listing.raw_hash is None and delta.manifest.index_raw_hash is not None
    assert _read(listing.parts).equals(_index_after(writer, delta))
    assert key_index.of_snapshot(delta.manifest, delta.manifest_uri).raw_hash is None
