"""Helpers (no tests) for the loader's integration tests: hand-built snapshots written to the stack's
fake GCS, the real notification chain into the loader server, and what the loader leaves behind
(ledger, table, published messages, its log)."""
from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import gcs, parquet_parts, raw_hash
from shared.clients import publisher, subscriber
from shared.extractor.snapshot import arrow_schema, new_run_id
from shared.hashing import ENCODING_VERSION, HASH_ALGORITHM, RowHasher, TableFingerprint
from shared.identifiers import quote_bigquery
from shared.key_index import index_schema
from shared.manifest import FORMAT_VERSION, Delta, Fingerprint, HashSpec, Manifest, Part, Target
from shared.schema import KEY_HASH_COLUMN, Column, TableSchema
from shared.topology import (
    GCS_NOTIFICATIONS_TOPIC,
    LEDGER_TABLE,
    MANIFEST_NAME,
    STAGING_DATASET_SUFFIX,
    subscription_name,
)
from shared.types import arrow_type, arrow_value_converter

T = TypeVar("T")
Row = tuple[Any, ...]
COLUMNS = (("id", "INT64"), ("name", "STRING"), ("amount", "NUMERIC"))


def table_schema(columns: Sequence[tuple[str, str]] = COLUMNS, key: Sequence[str] = ("id",)) -> TableSchema:
    return TableSchema(columns=[Column(name=n, bq_name=n, source_type=t.lower(), bq_type=t, nullable=n not in key)
                                for n, t in columns], key=list(key))


def rows_for(seed: int, count: int, start: int = 1) -> list[Row]:
    """Distinct data per seed: the same keys, different names and amounts."""
    return [(i, f"name-{seed}-{i}", Decimal(f"{seed * 1000 + i}.{i % 100:02d}")) for i in range(start, start + count)]


def wait_for(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclass(frozen=True)
class Place:
    """One test's own bucket, BigQuery project and dataset, and Pub/Sub project."""

    stack: LocalStack
    bucket: str
    project: str
    dataset: str

    @classmethod
    def create(cls, stack: LocalStack, unique: str) -> Place:
        place = cls(stack, f"loader-{unique}", f"ldr-{unique}", f"ds_{unique}")
        stack.ensure_resources(bucket=place.bucket, bigquery_project=place.project, dataset=place.dataset,
                               pubsub_project=place.project)
        return place

    def table_id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    @property
    def target(self) -> Callable[[str], Target]:
        return lambda table: Target(project=self.project, dataset=self.dataset, table=table, pubsub_project=self.project)


@dataclass(frozen=True)
class Snapshot:
    place: Place
    manifest: Manifest
    folder: str
    rows: dict[tuple, Row]  # the whole table once applied, by key

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def manifest_name(self) -> str:
        return f"{self.folder}/{MANIFEST_NAME}"

    @property
    def manifest_uri(self) -> str:
        return gcs.uri(self.place.bucket, self.manifest_name)

    def raw(self) -> dict[str, Any]:
        return json.loads(self.manifest.to_json())

    def publish(self, raw: dict[str, Any] | None = None) -> None:
        """Writes the manifest, last, as the extractor does; its finalize event starts the load."""
        body = json.dumps(raw).encode() if raw is not None else self.manifest.to_json().encode()
        gcs.upload(self.place.bucket, self.manifest_name, body, "application/json", only_if_new=True)


def _parquet(schema: pa.Schema, columns: list[list[Any]]) -> bytes:
    buffer = io.BytesIO()
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buffer)
    return buffer.getvalue()


def upload_part(place: Place, name: str, data: bytes, rows: int) -> Part:
    stored = gcs.upload(place.bucket, name, data, "application/vnd.apache.parquet")
    return Part(uri=stored.uri, rows=rows, bytes=stored.size, md5=stored.md5)


@dataclass
class Writer:
    """Builds snapshots of one table the way the extractor does (converted values, row and key
    hashes, fingerprint), with the manifest left for the test to publish."""

    place: Place
    table: str
    schema: TableSchema = field(default_factory=table_schema)
    part_rows: int | None = None  # rows a part at most, as `extract.chunk_rows`; None: one part

    def __post_init__(self) -> None:
        self._hasher = RowHasher(self.schema.key_positions)
        self._convert = [arrow_value_converter(c.bq_type) for c in self.schema.columns]

    def key(self, row: Row) -> tuple:
        return tuple(row[p] for p in self.schema.key_positions)

    def _hashed(self, rows: Sequence[Row]) -> list[tuple[Row, str, str]]:
        out = []
        for row in rows:
            converted = tuple(c(v) for c, v in zip(self._convert, row, strict=True))
            out.append((converted, *self._hasher(converted)))
        return out

    def _slices(self, rows: Sequence[T]) -> list[Sequence[T]]:
        size = self.part_rows or max(len(rows), 1)
        return [rows[start:start + size] for start in range(0, len(rows), size)]

    def _rows_part(self, folder: str, hashed: list[tuple[Row, str, str]]) -> list[Part]:
        parts = []
        for number, rows in enumerate(self._slices(hashed)):
            columns = [list(c) for c in zip(*(r for r, _, _ in rows), strict=True)]
            columns += [[k for _, k, _ in rows], [h for _, _, h in rows]]
            parts.append(upload_part(self.place, f"{folder}/part-{number:05d}.parquet",
                                     _parquet(arrow_schema(self.schema), columns), len(rows)))
        return parts

    def index_table(self, hashed: Sequence[tuple[Row, str, str]]) -> pa.Table:
        """Key index rows (`shared.key_index`) of these rows in key order, without raw hashes."""
        ordered = sorted(hashed, key=lambda h: self.key(h[0]))
        schema = index_schema(self.schema)
        columns = [[self.key(r)[i] for r, _, _ in ordered] for i in range(len(self.schema.key_columns))]
        columns += [[k for _, k, _ in ordered], [h for _, _, h in ordered], [None] * len(ordered)]
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                                    schema=schema)

    def _index_parts(self, name: str, hashed: Sequence[tuple[Row, str, str]]) -> list[Part]:
        """`name` ends in `-00000.parquet`; each further part counts up from there."""
        table = self.index_table(hashed)
        ranges = self._slices(range(table.num_rows))
        return [upload_part(self.place, name.replace("-00000.", f"-{number:05d}."),
                            parquet_parts.encode(table.slice(rows.start, len(rows))), len(rows))
                for number, rows in enumerate(ranges)]

    def _manifest(self, run_id: str, sequence: int, parts: list[Part], after: list[tuple[Row, str, str]],
                  delta: Delta | None = None, index_parts: Sequence[Part] = ()) -> Manifest:
        fingerprint = TableFingerprint()
        for _, _, row_hash in after:
            fingerprint.add(row_hash)
        return Manifest(
            format_version=FORMAT_VERSION, run_id=run_id, source_table=f"dbo.{self.table}",
            target=self.place.target(self.table), mode="delta" if delta else "full", sequence=sequence,
            extracted_at=datetime.now(UTC), schema=self.schema,
            hash=HashSpec(algorithm=HASH_ALGORITHM, encoding_version=ENCODING_VERSION), parts=parts,
            row_count=len(after), fingerprint=Fingerprint(**fingerprint.to_dict()), delta=delta,
            index_parts=list(index_parts), index_raw_hash=raw_hash.tag() if index_parts or (
                delta and delta.index_patch_parts) else None,
        )

    def full(self, rows: Sequence[Row], sequence: int, *, index: bool = False) -> Snapshot:
        """`index`: with its key index, as the extractor writes one (a delta can then build on it)."""
        run_id = new_run_id()
        folder = f"snapshots/{self.table}/{run_id}"
        hashed = self._hashed(rows)
        index_parts = self._index_parts(f"{folder}/_index/index-00000.parquet", hashed) if index else []
        manifest = self._manifest(run_id, sequence, self._rows_part(folder, hashed), hashed, index_parts=index_parts)
        return Snapshot(self.place, manifest, folder, {self.key(r): r for r, _, _ in hashed})

    def delta(self, base: Snapshot, rows: Sequence[Row], sequence: int, *, index: bool = False) -> Snapshot:
        """Ships only what changed from `base` to `rows`: new and changed rows, and deleted keys
        (`index`: and the index patch of the changed rows, as the extractor does)."""
        run_id = new_run_id()
        folder = f"snapshots/{self.table}/{run_id}"
        hashed = self._hashed(rows)
        before = {k: self._hasher(r)[1] for k, r in base.rows.items()}
        changed = [h for h in hashed if before.get(self.key(h[0])) != h[2]]
        now = {self.key(r) for r, _, _ in hashed}
        gone = [r for k, r in base.rows.items() if k not in now]
        patch = self._index_parts(f"{folder}/_index/patch-00000.parquet", changed) if index else []
        delta = self._deleted(folder, base.run_id, sorted(gone, key=self.key), patch)
        return Snapshot(self.place, self._manifest(run_id, sequence, self._rows_part(folder, changed), hashed, delta),
                        folder, {self.key(r): r for r, _, _ in hashed})

    def _deleted(self, folder: str, base_run_id: str, gone: list[Row], patch: list[Part]) -> Delta:
        parts = []
        if gone:
            keys = self.schema.key_columns
            schema = pa.schema([pa.field(c.bq_name, arrow_type(c.bq_type)) for c in keys]
                               + [pa.field(KEY_HASH_COLUMN, pa.string())])
            columns = [[self.key(r)[i] for r in gone] for i in range(len(keys))]
            columns.append([self._hasher(r)[0] for r in gone])
            parts.append(upload_part(self.place, f"{folder}/deleted-00000.parquet", _parquet(schema, columns), len(gone)))
        return Delta(base_run_id=base_run_id, deleted_parts=parts, deleted_rows=len(gone), chain_length=1,
                     index_patch_parts=patch)


# --- what the loader left behind ---------------------------------------------------------------

def ledger(place: Place, run_id: str | None = None) -> list[dict[str, Any]]:
    if bq.get_table(f"{place.project}.{place.dataset}.{LEDGER_TABLE}") is None:
        return []
    where = f" WHERE run_id = '{run_id}'" if run_id else ""
    rows = bq.query(place.project, f"SELECT * FROM {quote_bigquery(place.project, place.dataset, LEDGER_TABLE)}"
                                   f"{where} ORDER BY recorded_at")
    return [dict(r.items()) for r in rows]


def wait_for_status(snapshot: Snapshot, status: str, timeout: float = 60) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((r for r in ledger(snapshot.place, snapshot.run_id) if r["status"] == status), None)

    return wait_for(found, timeout, f"a {status} ledger row for {snapshot.run_id}")


def table_rows(place: Place, table: str, schema: TableSchema | None = None) -> dict[tuple, Row]:
    schema = schema or table_schema()
    if bq.get_table(place.table_id(table)) is None:
        return {}
    columns = ", ".join(quote_bigquery(c.bq_name) for c in schema.columns)
    rows = bq.query(place.project, f"SELECT {columns} FROM {quote_bigquery(*place.table_id(table).split('.'))}")
    positions = schema.key_positions
    return {tuple(r[p] for p in positions): tuple(r.values()) for r in rows}


def staging_tables(place: Place) -> list[bigquery.table.TableListItem]:
    try:
        return list(bq.client(place.project).list_tables(f"{place.project}.{place.dataset}{STAGING_DATASET_SUFFIX}"))
    except gexc.NotFound:
        return []


def loader_log(stack: LocalStack, **labels: str) -> list[dict[str, Any]]:
    """The loader server's JSON log lines whose labels include `labels`."""
    path = stack.log_path("loader")
    entries = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        found = entry.get("logging.googleapis.com/labels") or {}
        if all(found.get(k) == v for k, v in labels.items()):
            entries.append(entry)
    return entries


def log_messages(stack: LocalStack, **labels: str) -> list[str]:
    return [e["message"] for e in loader_log(stack, **labels)]


# --- events in -----------------------------------------------------------------------------------

def notify(stack: LocalStack, bucket: str, name: str, generation: str = "1") -> str:
    """Publishes a notification exactly as GCS (and fake-gcs-server) does; returns its message id."""
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": bucket, "objectId": name,
                  "objectGeneration": generation, "payloadFormat": "JSON_API_V1"}
    body = json.dumps({"kind": "storage#object", "bucket": bucket, "name": name, "generation": generation}).encode()
    topic = publisher().topic_path(stack.project, GCS_NOTIFICATIONS_TOPIC)
    return publisher().publish(topic, body, **attributes).result(timeout=30)


def post_storage_event(stack: LocalStack, bucket: str, name: str, event_id: str) -> requests.Response:
    """Eventarc's direct storage trigger: a binary-mode CloudEvent straight to the loader server."""
    headers = {
        "ce-id": event_id, "ce-specversion": "1.0", "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}", "ce-subject": f"objects/{name}",
        "ce-time": datetime.now(UTC).isoformat(), "content-type": "application/json",
    }
    body = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": "1"}
    return requests.post(f"http://127.0.0.1:{stack.ports.loader}/", headers=headers, json=body, timeout=120)


@contextmanager
def held_notifications(stack: LocalStack) -> Iterator[None]:
    """The loader's push subscription turned into a pull one for the block: notifications wait in
    Pub/Sub, and are pushed to the real loader server the moment the block ends."""
    path = subscriber().subscription_path(stack.project, subscription_name("loader"))
    endpoint = subscriber().get_subscription(subscription=path).push_config.push_endpoint
    subscriber().modify_push_config(request={"subscription": path, "push_config": {}})
    try:
        yield
    finally:
        subscriber().modify_push_config(request={"subscription": path, "push_config": {"push_endpoint": endpoint}})


# --- messages out --------------------------------------------------------------------------------

@dataclass
class Inbox:
    """Pulls one subscription, keeping only the messages a test is interested in (others go back)."""

    project: str
    subscription: str
    owned: bool = False
    seen: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def on_topic(cls, project: str, topic: str) -> Inbox:
        name = f"test-{topic}-{uuid.uuid4().hex[:8]}"
        subscriber().create_subscription(request={"name": subscriber().subscription_path(project, name),
                                                  "topic": publisher().topic_path(project, topic)})
        return cls(project, name, owned=True)

    def _pull(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        path = subscriber().subscription_path(self.project, self.subscription)
        try:
            response = subscriber().pull(request={"subscription": path, "max_messages": 100}, timeout=3)
        except (gexc.DeadlineExceeded, gexc.RetryError):
            return
        ours, others = [], []
        for received in response.received_messages:
            message = {"data": json.loads(received.message.data or b"{}"),
                       "attributes": dict(received.message.attributes)}
            wanted = keep(message)
            (ours if wanted else others).append(received.ack_id)
            if wanted:
                self.seen.append(message)
        if ours:
            subscriber().acknowledge(request={"subscription": path, "ack_ids": ours})
        if others:
            subscriber().modify_ack_deadline(request={"subscription": path, "ack_ids": others, "ack_deadline_seconds": 0})

    def wait(self, keep: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        def enough() -> bool:
            self._pull(keep)
            return len([m for m in self.seen if keep(m)]) >= count

        wait_for(enough, timeout, f"{count} message(s) on {self.subscription}", poll=0)
        return [m for m in self.seen if keep(m)]

    def quiet(self, keep: Callable[[dict[str, Any]], bool], seconds: float) -> list[dict[str, Any]]:
        """Everything matching that arrives within `seconds` (used to show nothing more comes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pull(keep)
        return [m for m in self.seen if keep(m)]

    def close(self) -> None:
        if self.owned:
            subscriber().delete_subscription(subscription=subscriber().subscription_path(self.project, self.subscription))


def for_run(run_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["data"].get("run_id") == run_id or m["attributes"].get("run_id") == run_id


def storage_event(bucket: str, name: str, event_id: str | None = None) -> CloudEvent:
    """The same storage event as a CloudEvent object, for calling the loader in-process."""
    return CloudEvent({"id": event_id or uuid.uuid4().hex, "type": "google.cloud.storage.object.v1.finalized",
                       "source": f"//storage.googleapis.com/projects/_/buckets/{bucket}", "specversion": "1.0"},
                      {"bucket": bucket, "name": name, "generation": "1"})
