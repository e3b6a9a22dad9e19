"""A loader that dies anywhere leaves a state its redelivery converges from; a message that keeps
failing transiently ends in the dead-letter topic.

The shared stack's loader server runs without MATRIX_FAULT, so the crashing delivery is an
in-process call while the snapshot's notification is held back in Pub/Sub; releasing it hands the
redelivery to the real chain."""
from __future__ import annotations

import pytest

from matrix_sync.stack import LocalStack
from matrix_sync.stack.bootstrap import DEAD_LETTER_SUBSCRIPTION_SUFFIX, MAX_DELIVERY_ATTEMPTS
from shared import bigquery as bq
from shared.loader import faults
from shared.loader.handler import handle_snapshot_event
from shared.loader.staging import STAGING_TTL
from shared.topology import TABLE_LOADED_TOPIC, dead_letter_topic
from tests.integration.test_loader_support import (
    Inbox,
    Place,
    Snapshot,
    Writer,
    for_run,
    held_notifications,
    ledger,
    log_messages,
    rows_for,
    staging_tables,
    storage_event,
    table_rows,
    wait_for,
)

pytestmark = pytest.mark.stack


def check_crash_left(fault: str, place: Place, before: Snapshot, crashed: Snapshot, loaded: Inbox) -> None:
    rows = ledger(place, crashed.run_id)
    if fault == faults.BEFORE_PUBLISH:
        assert table_rows(place, "customers") == crashed.rows
        assert [(r["status"], r["published_at"]) for r in rows] == [("applied", None)]
        assert loaded.quiet(for_run(crashed.run_id), 1.0) == []
        return
    assert table_rows(place, "customers") == before.rows
    assert rows == []  # the transaction (ledger row included) never committed, or was rolled back
    if fault == faults.AFTER_STAGE:
        (left,) = staging_tables(place)  # a real crash drops nothing: the staging table expires instead
        assert crashed.run_id.replace("-", "_") in left.table_id
        # Each staging table is created with `expires` set, which the emulator ignores; its dataset's
        # default expiration (set by the loader too) is what it reports.
        dataset = bq.client(place.project).get_dataset(f"{left.project}.{left.dataset_id}")
        assert dataset.default_table_expiration_ms == STAGING_TTL.total_seconds() * 1000


@pytest.mark.parametrize("fault", faults.POINTS)
def test_a_crash_anywhere_converges_on_redelivery(stack: LocalStack, unique_name: str,
                                                  monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    loaded = Inbox.on_topic(place.project, TABLE_LOADED_TOPIC)
    try:
        before = writer.full(rows_for(1, 12), sequence=1)
        before.publish()
        wait_for(lambda: ledger(place, before.run_id), 60, "the first snapshot")
        crashed = writer.full(rows_for(2, 15, start=4), sequence=2)
        with held_notifications(stack):
            crashed.publish()
            monkeypatch.setenv(faults.FAULT_VARIABLE, fault)
            with pytest.raises(Exception, match=f"MATRIX_FAULT={fault}"):
                handle_snapshot_event(storage_event(place.bucket, crashed.manifest_name))
            monkeypatch.delenv(faults.FAULT_VARIABLE)
            check_crash_left(fault, place, before, crashed, loaded)
        # the notification, released, is the redelivery
        row = wait_for(lambda: next((r for r in ledger(place, crashed.run_id) if r["published_at"]), None), 60,
                       "the redelivery to apply and publish")
        assert [r["status"] for r in ledger(place, crashed.run_id)] == ["applied"]
        assert (row["rows_inserted"], row["rows_updated"], row["rows_deleted"]) == (6, 9, 3)
        assert table_rows(place, "customers") == crashed.rows
        assert len(loaded.wait(for_run(crashed.run_id))) == 1
        assert len(loaded.quiet(for_run(crashed.run_id), 1.0)) == 1
    finally:
        loaded.close()


def test_a_message_that_always_fails_transiently_is_dead_lettered(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "orders")
    never = writer.full(rows_for(1, 5), sequence=1)  # its manifest is never written
    orphan = writer.delta(never, rows_for(1, 6), sequence=2)
    dead = Inbox(stack.project, dead_letter_topic("loader") + DEAD_LETTER_SUBSCRIPTION_SUFFIX)
    orphan.publish()
    message = dead.wait(lambda m: m["attributes"].get("objectId") == orphan.manifest_name, timeout=120)[0]
    assert message["attributes"]["bucketId"] == place.bucket
    attempts = [m for m in log_messages(stack, run_id=orphan.run_id) if "not applied yet" in m]
    assert len(attempts) == MAX_DELIVERY_ATTEMPTS
    assert ledger(place) == [] and table_rows(place, "orders") == {}
