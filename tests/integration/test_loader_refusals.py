"""Refusals through the real chain touch nothing: one `refused` ledger row with the reason, one alert,
the message acknowledged (delivered once), the table as it was. Widening and new columns apply."""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from matrix_sync.stack import LocalStack
from matrix_sync.stack.bootstrap import ALERTS_SUBSCRIPTION
from shared import bigquery as bq
from shared import gcs
from tests.integration.test_loader_support import (
    Inbox,
    Place,
    Snapshot,
    Writer,
    for_run,
    ledger,
    log_messages,
    rows_for,
    table_rows,
    table_schema,
    wait_for_status,
)

pytestmark = pytest.mark.stack
Raw = dict[str, Any]


def _version(raw: Raw, snapshot: Snapshot) -> Raw:
    return raw | {"format_version": 2}


def _missing_field(raw: Raw, snapshot: Snapshot) -> Raw:
    del raw["fingerprint"]
    return raw


def _part_missing(raw: Raw, snapshot: Snapshot) -> Raw:
    raw["parts"][0]["uri"] = raw["parts"][0]["uri"].replace("part-00000", "part-00009")
    return raw


def _wrong_md5(raw: Raw, snapshot: Snapshot) -> Raw:
    raw["parts"][0]["md5"] = gcs.md5_base64(b"something else")
    return raw


def _wrong_size(raw: Raw, snapshot: Snapshot) -> Raw:
    raw["parts"][0]["bytes"] += 1
    return raw


def _outside_folder(raw: Raw, snapshot: Snapshot) -> Raw:
    raw["parts"][0]["uri"] = f"gs://{snapshot.place.bucket}/elsewhere/part-00000.parquet"
    return raw


def _replace_part(snapshot: Snapshot, raw: Raw, data: bytes) -> Raw:
    """The part's object replaced and the manifest's size and MD5 made to match it: only the file's
    own content is wrong (a buggy writer, or someone with write access to the bucket)."""
    uri = raw["parts"][0]["uri"]
    stored = gcs.upload(*gcs.split_uri(uri), data, "application/vnd.apache.parquet")
    raw["parts"][0] |= {"bytes": stored.size, "md5": stored.md5}
    return raw


def _truncated(raw: Raw, snapshot: Snapshot) -> Raw:
    whole = gcs.read(*gcs.split_uri(raw["parts"][0]["uri"]))
    return _replace_part(snapshot, raw, whole[: len(whole) // 2])


def _other_table(raw: Raw, snapshot: Snapshot) -> Raw:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2, 3], "something": ["a", "b", "c"]}), buffer)
    return _replace_part(snapshot, raw, buffer.getvalue())


def _text_for_a_number(raw: Raw, snapshot: Snapshot) -> Raw:
    """The manifest's columns, in its order, but `amount` written as text: every load job fails on it."""
    table = pq.read_table(io.BytesIO(gcs.read(*gcs.split_uri(raw["parts"][0]["uri"]))))
    amount = table.schema.get_field_index("amount")
    retyped = table.set_column(amount, "amount", pa.array([f"q{i}" for i in range(table.num_rows)]))
    buffer = io.BytesIO()
    pq.write_table(retyped, buffer)
    return _replace_part(snapshot, raw, buffer.getvalue())


CASES: dict[str, tuple[Callable[[Raw, Snapshot], Raw], str]] = {
    "format-version": (_version, "unknown manifest format_version 2"),
    "missing-field": (_missing_field, "fingerprint: Field required"),
    "part-missing": (_part_missing, "part-00009.parquet is missing"),
    "wrong-md5": (_wrong_md5, "does not match the manifest"),
    "wrong-size": (_wrong_size, "does not match the manifest"),
    "outside-folder": (_outside_folder, "is outside the snapshot folder"),
    "truncated-part": (_truncated, "is not a readable Parquet file"),
    "part-of-another-table": (_other_table, "has the columns ['id', 'something']"),
    "text-for-a-number": (_text_for_a_number, "holds column(s) of another type than the manifest's schema: amount"),
}
SCHEMA_CASES: dict[str, tuple[list[tuple[str, str]], list[str], str]] = {
    "type-family": ([("id", "INT64"), ("name", "INT64"), ("amount", "NUMERIC")], ["id"],
                    "name of {table} would change type from STRING to INT64"),
    "narrowing": ([("id", "INT64"), ("name", "STRING"), ("amount", "INT64")], ["id"],
                  "amount of {table} would narrow from NUMERIC to INT64"),
    "key-change": ([("id", "INT64"), ("name", "STRING"), ("amount", "NUMERIC")], ["name"],
                   "key of {table} would change from (id) to (name)"),
    "dropped-column": ([("id", "INT64"), ("name", "STRING")], ["id"],
                       "amount of {table} were in the last applied snapshot and are not in this one"),
}


def assert_refused_once(place: Place, snapshot: Snapshot, reason: str, base: Snapshot) -> None:
    """Refused row, alert, table unchanged, and no second delivery of the event."""
    alerts = Inbox(place.project, ALERTS_SUBSCRIPTION)
    row = wait_for_status(snapshot, "refused")
    assert reason in row["message"], row["message"]
    alert = alerts.wait(for_run(snapshot.run_id))[0]["data"]
    assert alert["stage"] == "loader" and reason in alert["reason"] and alert["manifest_uri"] == snapshot.manifest_uri
    assert table_rows(place, base.manifest.target.table, base.manifest.table_schema) == base.rows
    # Acknowledged: Pub/Sub would redeliver a failed push after 1 s (the subscription's minimum backoff).
    time.sleep(2.5)
    refused_lines = [m for m in log_messages(place.stack, run_id=snapshot.run_id) if m.startswith("refused")]
    assert len(refused_lines) == 1, refused_lines
    assert [r["status"] for r in ledger(place, snapshot.run_id)] == ["refused"]
    assert len(alerts.quiet(for_run(snapshot.run_id), 0.5)) == 1


@pytest.mark.parametrize("case", list(CASES))
def test_a_manifest_it_cannot_trust_is_refused_and_nothing_changes(stack: LocalStack, unique_name: str,
                                                                    case: str) -> None:
    place = Place.create(stack, unique_name)
    writer = Writer(place, "customers")
    base = writer.full(rows_for(1, 6), sequence=1)
    base.publish()
    wait_for_status(base, "applied")
    broken = writer.full(rows_for(2, 6), sequence=2)
    change, reason = CASES[case]
    broken.publish(change(broken.raw(), broken))
    assert_refused_once(place, broken, reason, base)


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_a_schema_it_cannot_apply_is_refused_and_nothing_changes(stack: LocalStack, unique_name: str,
                                                                  case: str) -> None:
    place = Place.create(stack, unique_name)
    base = Writer(place, "orders")
    first = base.full(rows_for(1, 6), sequence=1)
    first.publish()
    wait_for_status(first, "applied")
    before = bq.get_table(place.table_id("orders")).schema
    columns, key, reason = SCHEMA_CASES[case]
    changed = Writer(place, "orders", table_schema(columns, key))
    values = {"INT64": lambda i: i, "STRING": lambda i: f"n{i}", "NUMERIC": lambda i: Decimal(i)}
    second = changed.full([tuple(values[t](i) for _, t in columns) for i in range(1, 7)], sequence=2)
    second.publish()
    assert_refused_once(place, second, reason.format(table=place.table_id("orders")), first)
    assert bq.get_table(place.table_id("orders")).schema == before


def test_an_unreadable_manifest_alerts_the_functions_project(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    alerts = Inbox(stack.project, ALERTS_SUBSCRIPTION)
    name = f"snapshots/junk/{unique_name}/_manifest.json"
    gcs.upload(place.bucket, name, b"{not json", "application/json")
    uri = gcs.uri(place.bucket, name)
    alert = alerts.wait(lambda m: m["data"].get("manifest_uri") == uri)[0]["data"]
    assert alert["reason"].startswith("manifest is not JSON") and alert["table"] == ""
    assert ledger(place) == []


def test_widening_and_new_columns_are_applied(stack: LocalStack, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    narrow = Writer(place, "payments", table_schema([("id", "INT64"), ("name", "STRING"), ("amount", "INT64")]))
    first = narrow.full([(i, f"n{i}", i * 100) for i in range(1, 6)], sequence=1)
    first.publish()
    wait_for_status(first, "applied")
    wide_schema = table_schema([("id", "INT64"), ("name", "STRING"), ("amount", "NUMERIC"), ("note", "STRING")])
    wide = Writer(place, "payments", wide_schema)
    second = wide.full([(i, f"n{i}", Decimal(f"{i}.123456789"), f"note {i}") for i in range(1, 7)], sequence=2)
    second.publish()
    row = wait_for_status(second, "applied")
    assert (row["rows_inserted"], row["rows_updated"]) == (1, 5)
    types = {f.name: f.field_type for f in bq.get_table(place.table_id("payments")).schema}
    assert (types["amount"], types["note"]) == ("NUMERIC", "STRING")
    assert table_rows(place, "payments", wide_schema) == second.rows  # nine decimals kept

