"""Eventarc's direct storage trigger: a binary-mode CloudEvent posted to the loader server applies
the snapshot; events about any other object are dropped without reading anything."""
from __future__ import annotations

import time

import pytest

from matrix_sync.stack import LocalStack
from shared import gcs
from shared.loader.handler import handle_snapshot_event
from tests.integration.test_loader_support import (
    Place,
    Writer,
    held_notifications,
    ledger,
    loader_log,
    log_messages,
    post_storage_event,
    rows_for,
    storage_event,
    table_rows,
    wait_for,
)

pytestmark = pytest.mark.stack


def test_a_storage_event_applies_the_snapshot(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "customers").full(rows_for(1, 30), sequence=1)
    event_id = f"eventarc-{unique_name}"
    with held_notifications(stack):  # so that the CloudEvent, not the notification, does the load
        snapshot.publish()
        response = post_storage_event(stack, place.bucket, snapshot.manifest_name, event_id)
        assert response.status_code == 200, response.text
        assert [r["status"] for r in ledger(place)] == ["applied"]  # done when the response came
        assert table_rows(place, "customers") == snapshot.rows
        assert any(m.startswith("applied snapshot") for m in log_messages(stack, event_id=event_id))
    # the notification, released, arrives second and changes nothing
    wait_for(lambda: sum("duplicate snapshot" in m for m in log_messages(stack, run_id=snapshot.run_id)) == 1, 30,
             "the held notification to be handled")
    assert [r["status"] for r in ledger(place)] == ["applied"]


def test_a_delta_without_its_base_answers_an_error_so_eventarc_retries(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "orders")
    base = writer.full(rows_for(1, 5), sequence=1)
    delta = writer.delta(base, rows_for(1, 7), sequence=2)
    with held_notifications(stack):
        delta.publish()
        response = post_storage_event(stack, place.bucket, delta.manifest_name, f"early-{unique_name}")
    assert response.status_code == 500
    assert ledger(place) == []


def test_events_about_other_objects_are_dropped_without_reading_them(stack: LocalStack, unique_name: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Through the server: a part in a bucket that does not even exist is answered at once.
    event_id = f"part-{unique_name}"
    started = time.monotonic()
    response = post_storage_event(stack, f"no-such-bucket-{unique_name}", "snapshots/t/run/part-00000.parquet", event_id)
    assert response.status_code == 200 and time.monotonic() - started < 2
    assert not [e for e in loader_log(stack, event_id=event_id) if e["severity"] in ("WARNING", "ERROR")]

    # In-process: not a single GCS call.
    def no_gcs(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("read GCS for an event about a part")

    for name in ("read", "info", "split_uri"):
        monkeypatch.setattr(gcs, name, no_gcs)
    for object_name in ("snapshots/t/run/part-00000.parquet", "snapshots/t/run/quarantine-00000.jsonl",
                        "snapshots/t/run/_manifest.json.tmp"):
        assert handle_snapshot_event(storage_event("any-bucket", object_name)) is None
