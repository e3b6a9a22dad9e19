"""At-least-once, duplicated and shuffled deliveries through the real chain end exactly as one
in-order delivery would: the newest snapshot in the table, one ledger row per snapshot."""
from __future__ import annotations

import random
import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.loader.handler import handle_snapshot_event
from shared.topology import TABLE_LOADED_TOPIC
from tests.integration.test_loader_support import (
    Inbox,
    Place,
    Writer,
    for_run,
    held_notifications,
    ledger,
    loader_log,
    log_messages,
    notify,
    post_storage_event,
    rows_for,
    staging_tables,
    storage_event,
    table_rows,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.stack


def handled(stack: LocalStack, event_ids: list[str]) -> bool:
    """Every one of these events has reached the loader and been dealt with (each logs a line)."""
    return all(loader_log(stack, event_id=event_id) for event_id in event_ids)


def test_concurrent_and_repeated_deliveries_apply_once_and_publish_once(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    loaded = Inbox.on_topic(place.project, TABLE_LOADED_TOPIC)
    try:
        snapshot = writer.full(rows_for(1, 25), sequence=1)
        with held_notifications(stack):
            snapshot.publish()
            copies = [notify(stack, place.bucket, snapshot.manifest_name) for _ in range(4)]
        # five deliveries of one snapshot at once
        wait_for(lambda: handled(stack, copies), 60, "all copies to be handled")
        wait_for_status(snapshot, "applied")
        assert table_rows(place, "customers") == snapshot.rows
        assert len(loaded.wait(for_run(snapshot.run_id))) == 1
        # and later ones, through both event paths
        later = [notify(stack, place.bucket, snapshot.manifest_name) for _ in range(3)]
        assert post_storage_event(stack, place.bucket, snapshot.manifest_name, f"again-{unique_name}").status_code == 200
        wait_for(lambda: handled(stack, later), 60, "the later copies to be handled")

        def duplicates() -> int:
            return sum("duplicate snapshot" in m for m in log_messages(stack, run_id=snapshot.run_id))

        wait_for(lambda: duplicates() >= 4 + 4, 30, "eight deliveries recognised as duplicates")
        assert [r["status"] for r in ledger(place)] == ["applied"]
        assert duplicates() == 4 + 4
        assert table_rows(place, "customers") == snapshot.rows
        assert len(loaded.quiet(for_run(snapshot.run_id), 1.5)) == 1
    finally:
        loaded.close()


def test_ten_full_snapshots_delivered_shuffled_end_with_the_newest(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "orders")
    loaded = Inbox.on_topic(place.project, TABLE_LOADED_TOPIC)
    try:
        snapshots = [writer.full(rows_for(seed, 20 + seed, start=seed), sequence=seed) for seed in range(1, 11)]
        order = list(snapshots)
        random.Random(unique_name).shuffle(order)
        started = time.monotonic()
        for snapshot in order:
            snapshot.publish()
        by_run = {s.run_id: s for s in snapshots}
        wait_for(lambda: len(ledger(place)) >= 10, 120, "a ledger row for each of the ten snapshots")
        seconds = time.monotonic() - started
        rows = ledger(place)
        assert sorted(r["run_id"] for r in rows) == sorted(by_run), "one row per snapshot"
        newest = snapshots[-1]
        assert table_rows(place, "orders") == newest.rows
        applied = [r for r in rows if r["status"] == "applied"]
        assert applied[-1]["run_id"] == newest.run_id
        sequences = [r["sequence"] for r in applied]
        assert sequences == sorted(sequences), "an older snapshot was applied after a newer one"
        assert {r["status"] for r in rows} <= {"applied", "stale"}
        assert len(applied) + sum(r["status"] == "stale" for r in rows) == 10
        assert staging_tables(place) == []
        published = loaded.wait(lambda m: m["data"].get("run_id") in by_run, count=len(applied))
        assert sorted(m["data"]["run_id"] for m in published) == sorted(r["run_id"] for r in applied)
        print(f"\nshuffled order {[s.manifest.sequence for s in order]}: converged in {seconds:.1f} s, "
              f"{len(applied)} applied, {10 - len(applied)} stale")

        # the ledger as it settles: published_at is set just after each publish the inbox saw
        def settled() -> list[dict[str, Any]] | None:
            current = ledger(place)
            return current if all(r["published_at"] for r in current if r["status"] == "applied") else None

        rows = wait_for(settled, 30, "published_at on every applied ledger row")

        # every notification once more, shuffled again: nothing changes
        random.Random(unique_name + "again").shuffle(order)
        again = [notify(stack, place.bucket, s.manifest_name) for s in order]
        wait_for(lambda: handled(stack, again), 120, "the repeated notifications to be handled")
        assert ledger(place) == rows
        assert table_rows(place, "orders") == newest.rows
        assert len(loaded.quiet(lambda m: m["data"].get("run_id") in by_run, 1.5)) == len(applied)
    finally:
        loaded.close()


def test_concurrent_update_aborts_are_retried_inside_the_loader(stack: LocalStack, unique_name: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "payments")
    snapshot = writer.full(rows_for(3, 10), sequence=1)
    real_script = bq.script
    calls: list[str] = []

    def aborted_twice(project: str, sql: str) -> list:
        calls.append(project)
        if len(calls) == 1:
            raise gexc.BadRequest("Transaction is aborted due to concurrent update against table x.y.payments")
        if len(calls) == 2:
            raise gexc.BadRequest("Could not serialize access to table x.y.payments due to concurrent update")
        return real_script(project, sql)

    with held_notifications(stack):
        snapshot.publish()
        monkeypatch.setattr(bq, "script", aborted_twice)
        outcome = handle_snapshot_event(storage_event(place.bucket, snapshot.manifest_name))
        monkeypatch.setattr(bq, "script", real_script)
    assert outcome is not None and outcome.status == "applied" and len(calls) == 3
    assert table_rows(place, "payments") == snapshot.rows
    # the held notification reaches the server afterwards and finds the snapshot applied and published
    wait_for(lambda: any("duplicate snapshot" in m for m in log_messages(stack, run_id=snapshot.run_id)), 30,
             "the server to see the duplicate")
    assert [r["status"] for r in ledger(place)] == ["applied"]
