"""The loader's critical path, shortened without weakening a check: each part's metadata fetched once
and its footer read from the generation whose MD5 was checked; the ledger's history read while the
parts are checked (the parts' verdict counting only for a snapshot the ledger lets through); a
delta's rows and deleted keys staged at once, each failure dropping both tables; and the staging
tables dropped after `table-loaded` is published, yet on every failure too.

Each delivery here is an in-process call while the notification is held back in Pub/Sub; releasing
it hands the notification to the real loader server, which then finds the snapshot applied (or
applies it)."""
from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from google.api_core import exceptions as gexc

from matrix_sync.stack import LocalStack
from shared import bq_jobs, gcs, ledger, logs
from shared.clients import storage_client
from shared.loader import apply, handler, part_footers, staging
from shared.loader.handler import handle_snapshot_event
from tests.integration.test_loader_support import (
    Place,
    Snapshot,
    Writer,
    held_notifications,
    rows_for,
    staging_tables,
    storage_event,
    table_rows,
    wait_for,
)
from tests.integration.test_loader_support import ledger as ledger_rows

pytestmark = pytest.mark.stack


def applied_base(place: Place, table: str) -> tuple[Writer, Snapshot]:
    writer = Writer(place, table)
    base = writer.full(rows_for(1, 12), sequence=1, index=True)
    base.publish()
    wait_for(lambda: any(r["status"] == "applied" and r["published_at"] for r in ledger_rows(place, base.run_id)),
             60, "the base to be applied")
    return writer, base


def delta_on(writer: Writer, base: Snapshot) -> Snapshot:
    return writer.delta(base, rows_for(2, 15, start=4), sequence=2, index=True)  # updates, inserts, deletes


def load(snapshot: Snapshot) -> Any:
    return handle_snapshot_event(storage_event(snapshot.place.bucket, snapshot.manifest_name))


class Requests:
    """The GCS requests sent while the loader checks the parts (before the index compaction, which
    reads the deleted keys and the index patch too, starts), as (method, object name, query)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[str, str, dict[str, list[str]]]] = []
        self.checking = 0
        session = storage_client()._http
        original = session.request

        def request(method: str, url: str, *args: object, **kwargs: object) -> object:
            if self.checking:
                parsed = urlparse(url)
                self.sent.append((method, unquote(parsed.path), parse_qs(parsed.query)))
            return original(method, url, *args, **kwargs)

        monkeypatch.setattr(session, "request", request)
        for name in ("check_parts", "check_part_footers"):  # the second: before the footer check joined the first
            if hasattr(apply, name):
                monkeypatch.setattr(apply, name, self.watched(getattr(apply, name)))

    def watched(self, check: Callable[..., Any]) -> Callable[..., Any]:
        def watching(*args: Any) -> Any:
            self.checking += 1
            try:
                return check(*args)
            finally:
                self.checking -= 1
        return watching

    def to(self, object_name: str, *, download: bool) -> list[dict[str, list[str]]]:
        return [query for method, path, query in self.sent if method == "GET" and path.endswith(f"/o/{object_name}")
                and path.startswith("/download/") == download]


def test_each_part_is_looked_up_once_and_its_footer_read_at_the_checked_generation(
        stack: LocalStack, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    writer, base = applied_base(place, "customers")
    snapshot = delta_on(writer, base)
    footers = snapshot.manifest.parts + snapshot.manifest.delta.deleted_parts + \
        snapshot.manifest.delta.index_patch_parts
    assert len(footers) == 3
    with held_notifications(stack):
        snapshot.publish()
        sent = Requests(monkeypatch)
        assert load(snapshot).status == ledger.APPLIED
    for part in snapshot.manifest.all_parts:
        name = gcs.split_uri(part.uri)[1]
        assert len(sent.to(name, download=False)) == 1, f"{name}: {sent.to(name, download=False)}"
        generation = str(storage_client().bucket(place.bucket).get_blob(name).generation)
        reads = sent.to(name, download=True)
        assert reads and all(query.get("generation") == [generation] for query in reads), reads


def test_a_part_replaced_after_its_check_is_not_read_in_its_place(stack: LocalStack, unique_name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "orders").full(rows_for(3, 20), sequence=1)
    (part,) = snapshot.manifest.parts
    bucket, name = gcs.split_uri(part.uri)
    original = part_footers._footer

    def replaced_first(*args: Any) -> Any:  # the same bytes written again: a new generation of the object
        gcs.upload(bucket, name, gcs.read(bucket, name), "application/vnd.apache.parquet")
        return original(*args)

    with held_notifications(stack):
        snapshot.publish()
        monkeypatch.setattr(part_footers, "_footer", replaced_first)
        with pytest.raises(gexc.NotFound):  # transient: the redelivery checks the object anew
            load(snapshot)
        assert table_rows(place, "orders") == {} and staging_tables(place) == []
    wait_for(lambda: table_rows(place, "orders") == snapshot.rows, 60, "the redelivery to load the snapshot")


def test_the_ledger_is_read_while_the_parts_are_checked_with_the_events_labels(
        stack: LocalStack, unique_name: str, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "payments").full(rows_for(4, 9), sequence=1)
    together = threading.Barrier(2, timeout=30)

    def meeting(original: Callable[..., Any]) -> Callable[..., Any]:
        def met(*args: Any) -> Any:
            logs.get("test").info("meeting in %s", original.__name__)
            together.wait()  # the history query and the parts check are under way at the same time
            return original(*args)
        return met

    monkeypatch.setattr(apply, "check_parts", meeting(apply.check_parts))
    monkeypatch.setattr(ledger, "history", meeting(ledger.history))
    with held_notifications(stack):
        snapshot.publish()
        assert load(snapshot).status == ledger.APPLIED
    entries = [json.loads(line) for line in log_stream.getvalue().splitlines() if "meeting in" in line]
    assert len(entries) == 2
    for entry in entries:
        labels = entry["logging.googleapis.com/labels"]
        assert labels["run_id"] == snapshot.run_id and labels["table"] == place.table_id("payments"), entry


def test_a_duplicate_is_a_duplicate_even_when_its_parts_are_gone(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    _writer, base = applied_base(place, "accounts")
    for part in base.manifest.parts:
        storage_client().bucket(place.bucket).delete_blob(gcs.split_uri(part.uri)[1])
    assert load(base).status == ledger.DUPLICATE


def test_a_deltas_staging_is_there_when_published_and_dropped_after(stack: LocalStack, unique_name: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    writer, base = applied_base(place, "customers")
    snapshot = delta_on(writer, base)
    at_publish: list[list[str]] = []
    original = handler.pubsub.publish_json

    def publish_json(*args: Any, **kwargs: Any) -> Any:
        at_publish.append(sorted(t.table_id for t in staging_tables(place)))
        return original(*args, **kwargs)

    monkeypatch.setattr(handler.pubsub, "publish_json", publish_json)
    with held_notifications(stack):
        snapshot.publish()
        assert load(snapshot).status == ledger.APPLIED
    both = sorted(staging.attempt(snapshot.manifest, what, 1).table_id.split(".")[2]
                  for what in (staging.ROWS, staging.DELETED))
    assert at_publish == [both]
    assert staging_tables(place) == []
    assert table_rows(place, "customers") == snapshot.rows


def test_a_failed_publish_still_drops_the_staging(stack: LocalStack, unique_name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    place = Place.create(stack, unique_name)
    snapshot = Writer(place, "orders").full(rows_for(5, 10), sequence=1)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise gexc.ServiceUnavailable("Pub/Sub is unreachable")

    monkeypatch.setattr(handler.pubsub, "publish_json", unreachable)
    with held_notifications(stack):
        snapshot.publish()
        with pytest.raises(gexc.ServiceUnavailable):
            load(snapshot)
        assert staging_tables(place) == []
        assert table_rows(place, "orders") == snapshot.rows  # committed; the redelivery publishes


@pytest.mark.parametrize("failing", [staging.DELETED, staging.ROWS])
def test_a_failed_staging_drops_the_other_staging_table_too(stack: LocalStack, unique_name: str,
                                                            monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    place = Place.create(stack, unique_name)
    writer, base = applied_base(place, "customers")
    snapshot = delta_on(writer, base)
    doomed = staging.attempt(snapshot.manifest, failing, 1).table_id
    original = bq_jobs.load_uris

    def load_uris(uris: Any, table_id: str, *args: Any, **kwargs: Any) -> Any:
        if table_id == doomed:
            raise gexc.ServiceUnavailable(f"the load into {table_id} failed")
        return original(uris, table_id, *args, **kwargs)

    monkeypatch.setattr(staging.bq_jobs, "load_uris", load_uris)
    with held_notifications(stack):
        snapshot.publish()
        with pytest.raises(gexc.ServiceUnavailable):
            load(snapshot)
        assert staging_tables(place) == []
        assert table_rows(place, "customers") == base.rows
    wait_for(lambda: table_rows(place, "customers") == snapshot.rows, 60, "the redelivery to apply the delta")
