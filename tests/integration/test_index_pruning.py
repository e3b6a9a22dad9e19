"""The loader deletes superseded compacted key indexes after applying a snapshot (fake GCS, the
BigQuery emulator, the loader server; one load in-process where a failure is injected)."""
from __future__ import annotations

import io
import json
from unittest import mock

import pytest
from google.api_core import exceptions as gexc

from matrix_sync.stack import LocalStack
from shared import gcs, key_index
from shared.key_index import COMPACTED_PART_SUFFIX, CompactedIndex
from shared.loader import index_pruning
from shared.loader.handler import handle_snapshot_event
from tests.integration.test_loader_support import (
    Place,
    Snapshot,
    Writer,
    held_notifications,
    ledger,
    rows_for,
    storage_event,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.stack


def _applied(snapshot: Snapshot) -> CompactedIndex | None:
    snapshot.publish()
    wait_for_status(snapshot, "applied")
    if not key_index.ships_patch(snapshot.manifest):
        return None
    return wait_for(lambda: key_index.read_listing(snapshot.manifest, snapshot.manifest_uri), 30,
                    f"the compacted index of {snapshot.run_id}")


def _present(listing: CompactedIndex) -> list[bool]:
    return [gcs.info(p.uri) is not None for p in listing.parts]


def _changed(base: Snapshot, number: int) -> list[tuple]:
    """Row 5+n updated, row 10+n deleted, row 200+n new."""
    rows = [(r[0], f"changed {number}", r[2]) if r[0] == 5 + number else r
            for r in base.rows.values() if r[0] != 10 + number]
    return [*rows, (200 + number, f"new {number}", None)]


def _chain(writer: Writer, length: int) -> tuple[Snapshot, list[Snapshot], list[CompactedIndex]]:
    """A full snapshot and `length` deltas on it, each applied by the loader server."""
    full = writer.full(rows_for(3, 30), sequence=1, index=True)
    _applied(full)
    deltas, listings, base = [], [], full
    for number in range(length):
        delta = writer.delta(base, _changed(base, number), sequence=2 + number, index=True)
        listing = _applied(delta)
        assert listing is not None and all(p.uri.endswith(COMPACTED_PART_SUFFIX) for p in listing.parts)
        deltas.append(delta)
        listings.append(listing)
        base = delta
    return full, deltas, listings


def test_a_pruned_index_reads_as_no_index_and_everything_else_stays(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    full, deltas, listings = _chain(Writer(place, "pruned"), 3)
    wait_for(lambda: not any(_present(listings[0])), 30, "the first delta's index pruned")
    assert all(_present(listings[1])) and all(_present(listings[2]))
    assert all(gcs.info(p.uri) for p in full.manifest.index_parts), "a full snapshot's index is never pruned"
    first = deltas[0]
    assert key_index.read_listing(first.manifest, first.manifest_uri) == listings[0], "the listing stays"
    assert all(gcs.info(p.uri) for p in [*first.manifest.all_parts]), "its data, patch and deleted keys stay"
    with pytest.raises(key_index.IndexUnavailable, match="is gone"):
        key_index.of_snapshot(first.manifest, first.manifest_uri)


def test_a_delete_that_fails_leaves_the_load_applied_and_warns(stack: LocalStack, unique_name: str,
                                                               log_stream: io.StringIO) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "unpruned")
    _full, deltas, listings = _chain(writer, 2)
    third = writer.delta(deltas[-1], _changed(deltas[-1], 7), sequence=9, index=True)
    forbidden = gexc.Forbidden("the loader may not delete this object")
    with held_notifications(stack), \
            mock.patch.object(index_pruning.gcs, "delete_with_suffix", side_effect=forbidden) as delete:
        third.publish()
        outcome = handle_snapshot_event(storage_event(place.bucket, third.manifest_name))
    assert outcome is not None and outcome.status == "applied" and delete.called
    row = next(r for r in ledger(place, third.run_id) if r["status"] == "applied")
    assert row["published_at"] is not None
    warnings = [line for line in map(json.loads, log_stream.getvalue().splitlines()) if line["severity"] == "WARNING"]
    assert [w for w in warnings if deltas[0].run_id in w["message"] and third.run_id in w["message"]], warnings
    assert all(_present(listings[0])), "nothing was deleted"
