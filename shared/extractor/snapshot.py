"""One extraction of one table: Parquet parts with row and key hashes, then the manifest, last."""
from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from shared import gcs, logs
from shared.config import Config
from sqlalchemy.engine import Engine

from shared.extractor.source import SourceTable, stream_rows
from shared.hashing import ENCODING_VERSION, HASH_ALGORITHM, RowHasher, TableFingerprint
from shared.manifest import FORMAT_VERSION, Fingerprint, HashSpec, Manifest, Part, Quarantine, Target
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.topology import MANIFEST_NAME
from shared.types import arrow_type, arrow_value_converter

log = logs.get(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """Time-sortable and unique: UTC time to the microsecond plus random hex."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def snapshot_folder(config: Config, target_table: str, run_id: str) -> str:
    return f"{config.gcs.prefix}/{target_table}/{run_id}"


def arrow_schema(schema: TableSchema) -> pa.Schema:
    fields = [pa.field(c.bq_name, arrow_type(c.bq_type), nullable=c.nullable) for c in schema.columns]
    fields += [pa.field(KEY_HASH_COLUMN, pa.string(), nullable=False), pa.field(ROW_HASH_COLUMN, pa.string(), nullable=False)]
    return pa.schema(fields)


@dataclass
class SnapshotWriter:
    """Turns chunks of source rows into uploaded parts; holds one chunk at a time."""

    config: Config
    source: SourceTable
    run_id: str
    parts: list[Part] = field(default_factory=list)
    quarantine_uris: list[str] = field(default_factory=list)
    quarantined: int = 0
    fingerprint: TableFingerprint = field(default_factory=TableFingerprint)

    def __post_init__(self) -> None:
        schema = self.source.schema
        self._converters = [arrow_value_converter(c.bq_type) for c in schema.columns]
        self._hasher = RowHasher(schema.key_positions)
        self._arrow_schema = arrow_schema(schema)
        self.folder = snapshot_folder(self.config, self.source.config.target_table, self.run_id)

    def write_chunk(self, rows: Sequence[tuple]) -> int:
        good: list[tuple] = []
        rejected: list[dict[str, object]] = []
        for row in rows:
            try:
                good.append(tuple(convert(value) for convert, value in zip(self._converters, row, strict=True)))
            except (ValueError, TypeError, ArithmeticError) as error:
                rejected.append(self._quarantine_entry(row, error))
        hashes = [self._hasher(row) for row in good]
        for _, row_hash in hashes:
            self.fingerprint.add(row_hash)
        if good:
            self._upload_part(good, hashes)
        if rejected:
            self._upload_quarantine(rejected)
        return len(good)

    def _upload_part(self, rows: list[tuple], hashes: list[tuple[str, str]]) -> None:
        columns = list(zip(*rows, strict=True))
        key_hashes, row_hashes = zip(*hashes, strict=True)
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, self._arrow_schema, strict=False)]
        arrays += [pa.array(key_hashes, pa.string()), pa.array(row_hashes, pa.string())]
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(arrays, schema=self._arrow_schema), buffer, compression="snappy")
        name = f"{self.folder}/part-{len(self.parts):05d}.parquet"
        stored = gcs.upload(self.config.gcs.bucket, name, buffer.getvalue(), "application/vnd.apache.parquet")
        self.parts.append(Part(uri=stored.uri, rows=len(rows), bytes=stored.size, md5=stored.md5))

    def _quarantine_entry(self, row: tuple, error: Exception) -> dict[str, object]:
        names = [c.name for c in self.source.schema.columns]
        key = {k: repr(row[names.index(k)]) for k in self.source.schema.key}
        return {"key": key, "reason": f"{type(error).__name__}: {error}", "row": [repr(v) for v in row]}

    def _upload_quarantine(self, rejected: list[dict[str, object]]) -> None:
        body = "\n".join(json.dumps(entry, ensure_ascii=False) for entry in rejected).encode()
        name = f"{self.folder}/quarantine-{len(self.quarantine_uris):05d}.jsonl"
        self.quarantine_uris.append(gcs.upload(self.config.gcs.bucket, name, body, "application/x-ndjson").uri)
        self.quarantined += len(rejected)
        log.warning("quarantined %d row(s) of %s: %s", len(rejected), self.source.config.name, rejected[0]["reason"])

    def finish(self, extracted_at: datetime, sequence: int) -> Manifest:
        """Writes the manifest, last; its finalize event is what starts the load."""
        config, table = self.config, self.source.config
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            run_id=self.run_id,
            source_table=table.name,
            target=Target(
                project=config.bigquery.project, dataset=config.bigquery.dataset,
                table=table.target_table, pubsub_project=config.pubsub.project,
            ),
            mode="full",
            sequence=sequence,
            extracted_at=extracted_at,
            schema=self.source.schema,
            hash=HashSpec(algorithm=HASH_ALGORITHM, encoding_version=ENCODING_VERSION),
            parts=self.parts,
            row_count=sum(p.rows for p in self.parts),
            fingerprint=Fingerprint(**self.fingerprint.to_dict()),
            quarantine=Quarantine(rows=self.quarantined, uris=self.quarantine_uris),
        )
        gcs.upload(config.gcs.bucket, f"{self.folder}/{MANIFEST_NAME}", manifest.to_json().encode(),
                   "application/json", only_if_new=True)
        return manifest


@dataclass(frozen=True)
class ExtractResult:
    table: str
    run_id: str
    manifest_uri: str
    rows: int
    parts: int
    bytes: int
    quarantined: int
    seconds: float


def extract_table(config: Config, engine: Engine, source: SourceTable,
                  on_rows: Callable[[int], None] | None = None) -> ExtractResult:
    """Streams the table into a snapshot; a failure before the manifest leaves no manifest behind."""
    started = time.monotonic()
    extracted_at = datetime.now(UTC)
    run_id = new_run_id(extracted_at)
    writer = SnapshotWriter(config, source, run_id)
    with logs.labels(run_id=run_id, table=source.config.name):
        for chunk in stream_rows(engine, source, config.extract.chunk_rows):
            writer.write_chunk(chunk)
            if on_rows:
                on_rows(len(chunk))
        manifest = writer.finish(extracted_at, sequence=time.time_ns() // 1000)
        result = ExtractResult(
            table=source.config.name, run_id=run_id,
            manifest_uri=gcs.uri(config.gcs.bucket, f"{writer.folder}/{MANIFEST_NAME}"),
            rows=manifest.row_count, parts=len(manifest.parts), bytes=sum(p.bytes for p in manifest.parts),
            quarantined=writer.quarantined, seconds=round(time.monotonic() - started, 3),
        )
        logs.event(log, f"snapshot of {source.config.name} written: {result.rows} rows in {result.parts} parts",
                   rows=result.rows, parts=result.parts, bytes=result.bytes, quarantined=result.quarantined,
                   seconds=result.seconds)
    return result
