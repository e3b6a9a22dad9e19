"""Delta snapshots through the real chain (fake GCS -> notification -> Pub/Sub push -> loader server):
applied only on top of their base, in one transaction with the ledger row."""
from __future__ import annotations

import pytest

from matrix_sync.stack import LocalStack
from shared.topology import TABLE_LOADED_TOPIC
from tests.integration.test_loader_support import (
    Inbox,
    Place,
    Writer,
    for_run,
    ledger,
    log_messages,
    rows_for,
    staging_tables,
    table_rows,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.stack


def changed(rows: list[tuple]) -> list[tuple]:
    """Row 2 updated, row 3 deleted, rows 101 and 102 new; the rest as they were."""
    out = [r for r in rows if r[0] != 3]
    out = [(r[0], "renamed", r[2]) if r[0] == 2 else r for r in out]
    return out + [(101, "new-101", None), (102, None, rows[0][2])]


def test_delta_on_its_base_updates_inserts_and_deletes_in_one_load(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    loaded = Inbox.on_topic(place.project, TABLE_LOADED_TOPIC)
    try:
        base = writer.full(rows_for(1, 20), sequence=1)
        base.publish()
        wait_for_status(base, "applied")
        delta = writer.delta(base, changed(rows_for(1, 20)), sequence=2)
        assert [p.rows for p in delta.manifest.parts] == [3] and delta.manifest.delta.deleted_rows == 1
        delta.publish()
        row = wait_for_status(delta, "applied")
        assert (row["mode"], row["rows_inserted"], row["rows_updated"], row["rows_deleted"]) == ("delta", 2, 1, 1)
        assert table_rows(place, "customers") == delta.rows
        message = loaded.wait(for_run(delta.run_id))[0]["data"]
        assert (message["mode"], message["rows_inserted"], message["rows_updated"], message["rows_deleted"]) == (
            "delta", 2, 1, 1)
        wait_for(lambda: ledger(place, delta.run_id)[0]["published_at"], 10, "published_at after the publish")
        assert staging_tables(place) == []
    finally:
        loaded.close()


def test_a_delta_before_its_base_waits_for_redelivery_then_applies(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "orders")
    base = writer.full(rows_for(2, 10), sequence=1)
    delta = writer.delta(base, changed(rows_for(2, 10)), sequence=2)
    delta.publish()  # out of order: the base is not even written yet
    wait_for(lambda: any("not applied yet" in m for m in log_messages(stack, run_id=delta.run_id)), 30,
             "the loader to put the early delta back")
    assert table_rows(place, "orders") == {}
    base.publish()
    wait_for_status(delta, "applied", timeout=60)
    assert table_rows(place, "orders") == delta.rows
    statuses = [(r["run_id"], r["status"]) for r in ledger(place)]
    assert statuses == [(base.run_id, "applied"), (delta.run_id, "applied")]


def test_a_delta_whose_base_was_superseded_is_refused(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "accounts")
    alerts = Inbox(place.project, "alerts-sub")
    base = writer.full(rows_for(3, 8), sequence=1)
    base.publish()
    wait_for_status(base, "applied")
    newer = writer.full(rows_for(4, 8), sequence=2)
    newer.publish()
    wait_for_status(newer, "applied")
    late_delta = writer.delta(base, changed(rows_for(3, 8)), sequence=3)
    late_delta.publish()
    row = wait_for_status(late_delta, "refused")
    assert "moved to run" in row["message"] and base.run_id in row["message"]
    assert table_rows(place, "accounts") == newer.rows
    alert = alerts.wait(for_run(late_delta.run_id))[0]["data"]
    assert alert["reason"] == row["message"] and alert["table"] == place.table_id("accounts")


def test_a_delta_that_would_leave_the_wrong_row_count_is_rolled_back(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "payments")
    base = writer.full(rows_for(5, 12), sequence=1)
    base.publish()
    wait_for_status(base, "applied")
    delta = writer.delta(base, changed(rows_for(5, 12)), sequence=2)
    raw = delta.raw()
    raw["row_count"] += 5  # the table the extractor diffed against is not the one in BigQuery
    raw["fingerprint"]["count"] += 5
    delta.publish(raw)
    row = wait_for_status(delta, "refused")
    assert "would leave 13 rows" in row["message"] and "says 18" in row["message"]
    assert table_rows(place, "payments") == base.rows  # the MERGE and DELETE were rolled back
    assert [r["status"] for r in ledger(place)] == ["applied", "refused"]
