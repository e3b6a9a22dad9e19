"""One extraction of one table: Parquet parts with row and key hashes, then the manifest, last."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from shared import gcs, logs, parquet_parts
from shared.config import Config
from shared.extractor import quarantine
from shared.extractor.delta import Base, KeyOrderError, find_base, key_diff
from shared.extractor.prefetch import read_ahead
from shared.extractor.prepare import ChunkPreparer, Prepared
from shared.extractor.prepare import arrow_schema as arrow_schema  # re-exported: callers import it from here
from shared.extractor.prepare_ahead import default_workers, prepared_in_order
from shared.extractor.repeated_keys import RepeatedKeyCheck
from shared.extractor.source import (
    SourceTable,
    connect,
    discover,
    key_boundaries,
    rows_with_duplicated_key,
    rows_without_key,
    stream_rows,
)
from shared.extractor.unchanged import ChunkIndex, Screen, Screened, chunk_changes
from shared.extractor.uploads import BackgroundUploads
from shared.hashing import ENCODING_VERSION, HASH_ALGORITHM, TableFingerprint
from shared.manifest import FORMAT_VERSION, Delta, Fingerprint, HashSpec, Manifest, Part, Quarantine, Target
from shared.raw_hash import RAW_HASH_COLUMN
from shared.raw_hash import tag as raw_hash_tag
from shared.schema import KEY_HASH_COLUMN, TableSchema
from shared.topology import MANIFEST_NAME
from shared.types import arrow_type

log = logs.get(__name__)


def _prefer_jemalloc() -> None:
    """Arrow's jemalloc pool hands freed chunk buffers back sooner than its default (mimalloc): about
    15% less peak memory for the same extraction (bench/, scenario 4). Not every build has it."""
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pass


def new_run_id(now: datetime | None = None) -> str:
    """Time-sortable and unique: UTC time to the microsecond plus random hex."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def snapshot_folder(config: Config, target_table: str, run_id: str) -> str:
    return f"{config.gcs.prefix}/{target_table}/{run_id}"


def deleted_schema(schema: TableSchema) -> pa.Schema:
    keys = [pa.field(c.bq_name, arrow_type(c.bq_type), nullable=False) for c in schema.key_columns]
    return pa.schema(keys + [pa.field(KEY_HASH_COLUMN, pa.string(), nullable=False)])


@dataclass
class _Gathered:
    """Tables collected for one file, and their rows."""

    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0

    def take(self) -> pa.Table | None:
        """Everything collected as one table (None: nothing), and the collection emptied."""
        if not self.tables:
            return None
        table = pa.concat_tables(self.tables)
        self.tables, self.rows, self.bytes = [], 0, 0
        return table


@dataclass
class SnapshotWriter:
    """Uploads parts as rows arrive; holds at most about two chunks at a time."""

    config: Config
    source: SourceTable
    run_id: str
    name_prefix: str = ""
    parts: list[Part] = field(default_factory=list)
    deleted_parts: list[Part] = field(default_factory=list)
    index_parts: list[Part] = field(default_factory=list)
    index_patch_parts: list[Part] = field(default_factory=list)
    quarantine_uris: list[str] = field(default_factory=list)
    quarantined: int = 0
    fingerprint: TableFingerprint = field(default_factory=TableFingerprint)

    def __post_init__(self) -> None:
        _prefer_jemalloc()
        self._prepare = ChunkPreparer(self.source.schema)
        self.folder = snapshot_folder(self.config, self.source.config.target_table, self.run_id)
        self._rows = _Gathered()
        self._deleted_buffer: list[tuple[tuple, str]] = []
        self._patch = _Gathered()
        self._uploads = BackgroundUploads()
        self._written = {"part": 0, "index": 0, "patch": 0, "deleted": 0}  # files named so far, uploaded or in flight

    def prepare(self, rows: Sequence[tuple]) -> Prepared:
        """Rows that break the source's declared schema (generated model) or cannot be represented
        in BigQuery are quarantined with the reason; the rest are converted and hashed."""
        return self.take(self._prepare(rows))

    def prepared(self, chunks: Iterable[Sequence[tuple]],
                 screen: Screen | None = None) -> Iterator[tuple[Screened, Prepared]]:
        """`prepare` of each chunk, two at a time on worker threads, in order; each chunk screened
        first (`shared.extractor.unchanged`): only the rows it does not keep are prepared."""
        screen = screen or Screen(self.source.schema)
        screened: deque[Screened] = deque()

        def to_prepare() -> Iterator[Sequence[tuple]]:
            for chunk in chunks:
                rest, seen = screen(chunk)
                screened.append(seen)
                yield rest

        for _, result in prepared_in_order(to_prepare(), self._prepare, default_workers()):
            yield screened.popleft(), self.take(result)

    def take(self, result: tuple[Prepared, list[dict[str, object]]]) -> Prepared:
        """A chunk's preparation counted in: its fingerprint, and its quarantined rows uploaded."""
        prepared, rejected = result
        self.fingerprint.merge(prepared.fingerprint)
        if rejected:
            self._upload_quarantine(rejected)
        return prepared

    def keys(self, prepared: Prepared) -> list[tuple]:
        return prepared.keys()

    def add_rows(self, rows: pa.Table) -> None:
        """Rows of a prepared chunk (`Prepared.table`, or a selection of it) for the next part."""
        self._gather(self._rows, rows, self._flush_rows)

    def add_deleted(self, deleted: Sequence[tuple[tuple, str]]) -> None:
        self._deleted_buffer.extend(deleted)
        if len(self._deleted_buffer) >= self.config.extract.chunk_rows:
            self._flush_deleted()

    def add_index(self, index: ChunkIndex) -> None:
        """A chunk's index rows; the rows kept from the base count in the fingerprint here."""
        self.fingerprint.merge(index.kept_fingerprint)
        if not index.table.num_rows:
            return
        self._upload_table(self.index_parts, f"_index/index-{self.name_prefix}{self._next('index')}.parquet",
                           index.table)

    def add_index_patch(self, index: ChunkIndex, shipped: pa.Array, *, screened: bool) -> None:
        """A delta's chunk: only the index rows that differ from the base's go out (the loader applies
        them to the base's index in the cloud): the rows it ships (`shipped`: positions in the
        prepared chunk) and, when the chunk was screened against the base's raw hashes, every row
        prepared again, whose raw hash changed even where its row hash did not."""
        self.fingerprint.merge(index.kept_fingerprint)
        table = index.table
        position = index.origin if index.origin is not None else pa.array(range(table.num_rows), pa.int64())
        differs = pc.is_in(position, value_set=shipped)
        if screened:
            differs = pc.or_(differs, pc.and_(pc.greater_equal(position, 0), pc.is_valid(table.column(RAW_HASH_COLUMN))))
        self._gather(self._patch, table.filter(differs), self._flush_patch)

    def _gather(self, into: _Gathered, table: pa.Table, flush: Callable[[], None]) -> None:
        """Collects a table's rows for the next file, written once a chunk's worth (rows or bytes) is there."""
        if not table.num_rows:
            return
        into.tables.append(table)
        into.rows += table.num_rows
        into.bytes += table.nbytes
        if into.rows >= self.config.extract.chunk_rows or into.bytes >= self.config.extract.chunk_bytes:
            flush()

    def _flush_patch(self) -> None:
        patch = self._patch.take()
        if patch is None:
            return
        self._upload_table(self.index_patch_parts,
                           f"_index/patch-{self.name_prefix}{self._next('patch')}.parquet", patch)

    def _flush_rows(self) -> None:
        rows = self._rows.take()
        if rows is None:
            return
        self._upload_table(self.parts, f"part-{self.name_prefix}{self._next('part')}.parquet", rows)

    def _flush_deleted(self) -> None:
        if not self._deleted_buffer:
            return
        keys = [key for key, _ in self._deleted_buffer]
        columns = [*zip(*keys, strict=True), [key_hash for _, key_hash in self._deleted_buffer]]
        schema = deleted_schema(self.source.schema)
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
        deleted = pa.Table.from_arrays(arrays, schema=schema)
        self._upload_table(self.deleted_parts, f"deleted-{self.name_prefix}{self._next('deleted')}.parquet", deleted)
        self._deleted_buffer = []

    def _next(self, kind: str) -> str:
        number = self._written[kind]
        self._written[kind] += 1
        return f"{number:05d}"

    def _upload_table(self, into: list[Part], name: str, table: pa.Table) -> None:
        """Encodes and uploads in the background; the Part lands in `into` when settled."""
        self._uploads.submit(into, lambda: self._upload(name, parquet_parts.encode(table), table.num_rows))

    def _upload(self, name: str, data: bytes, rows: int) -> Part:
        stored = gcs.upload(self.config.gcs.bucket, f"{self.folder}/{name}", data, parquet_parts.CONTENT_TYPE)
        return Part(uri=stored.uri, rows=rows, bytes=stored.size, md5=stored.md5)

    def _upload_quarantine(self, rejected: list[dict[str, object]]) -> None:
        """One quarantine file (format: `shared.extractor.quarantine`), written a line at a time."""
        if not rejected:
            return
        name = f"{self.folder}/quarantine-{self.name_prefix}{len(self.quarantine_uris):05d}.jsonl"
        self.quarantine_uris.append(quarantine.upload(self.config.gcs.bucket, name, rejected).uri)
        self.quarantined += len(rejected)
        log.warning("quarantined %d row(s) of %s: %s", len(rejected), self.source.config.name,
                    quarantine.reasons_counted(rejected))

    def quarantine_left_out(self, engine: Engine) -> None:
        """Quarantines the rows the key-ordered stream left out: a NULL in a key column, or a key
        more than one row holds."""
        schema, chunk_rows = self.source.schema, self.config.extract.chunk_rows
        key = list(zip(schema.key, schema.key_positions, strict=True))
        self._quarantine_each(rows_without_key(engine, self.source, chunk_rows), lambda row: (
            f"key column(s) {[name for name, at in key if row[at] is None]} NULL: a row without its whole "
            "key cannot be matched"))
        self._quarantine_each(rows_with_duplicated_key(engine, self.source, chunk_rows), lambda row: (
            f"key {tuple(row[at] for _, at in key)!r} is held by more than one row of the source: none of them "
            "can be matched, so none is loaded"))

    def _quarantine_each(self, chunks: Iterable[list[tuple]], reason: Callable[[tuple], str]) -> None:
        for rows in chunks:
            self._upload_quarantine([self._prepare.quarantine_entry(row, ValueError(reason(row))) for row in rows])

    def flush(self) -> None:
        """Writes what is buffered and waits for every upload (their Parts are then listed)."""
        self._flush_rows()
        self._flush_deleted()
        self._flush_patch()
        self._uploads.settle()

    def abandon(self) -> None:
        """After a failure: lets the uploads in flight end, so none outlives the run."""
        self._uploads.abandon()

    def close(self) -> None:
        """Ends the upload thread (after `flush`, nothing is in flight)."""
        self._uploads.close()

    def absorb(self, other: RangeOutput) -> None:
        """Takes over what a range worker wrote; ranges are absorbed in key order."""
        self.parts += other.parts
        self.index_parts += other.index_parts
        self.quarantine_uris += other.quarantine_uris
        self.quarantined += other.quarantined
        self.fingerprint.merge(TableFingerprint.from_dict(other.fingerprint))

    def finish(self, extracted_at: datetime, sequence: int, base: Base | None) -> Manifest:
        """Writes the manifest, last and only once; its finalize event is what starts the load."""
        self.flush()
        config, table = self.config, self.source.config
        delta = None
        if base is not None:
            delta = Delta(base_run_id=base.run_id, deleted_parts=self.deleted_parts,
                          deleted_rows=sum(p.rows for p in self.deleted_parts), chain_length=base.chain_length + 1,
                          index_patch_parts=self.index_patch_parts)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            run_id=self.run_id,
            source_table=table.name,
            source_dialect=self.source.dialect,
            target=Target(project=config.bigquery.project, dataset=config.bigquery.dataset,
                          table=table.target_table, pubsub_project=config.pubsub.project),
            mode="delta" if delta else "full",
            sequence=sequence,
            extracted_at=extracted_at,
            schema=self.source.schema,
            hash=HashSpec(algorithm=HASH_ALGORITHM, encoding_version=ENCODING_VERSION),
            parts=self.parts,
            row_count=self.fingerprint.count,
            fingerprint=Fingerprint(**self.fingerprint.to_dict()),
            quarantine=Quarantine(rows=self.quarantined, uris=self.quarantine_uris),
            index_parts=self.index_parts,
            index_raw_hash=raw_hash_tag() if self.index_parts or delta else None,  # a delta: even without a patch
            delta=delta,
        )
        gcs.upload(config.gcs.bucket, f"{self.folder}/{MANIFEST_NAME}", manifest.to_json().encode(),
                   "application/json", only_if_new=True)
        self.close()
        return manifest


@contextlib.contextmanager
def _abandoned_on_failure(writer: SnapshotWriter) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.abandon()
        raise


@dataclass(frozen=True)
class RangeOutput:
    """What one key-range worker wrote (picklable, crosses the process boundary)."""

    rows_read: int
    parts: list[Part]
    index_parts: list[Part]
    quarantine_uris: list[str]
    quarantined: int
    fingerprint: dict[str, int]


def extract_range(config: Config, table_name: str, run_id: str, index: int, lower: tuple | None,
                  upper: tuple | None, duplicated_keys: int) -> RangeOutput:
    """One key range of a full snapshot, in a worker process with its own source connection."""
    engine = connect(config.source)
    try:
        source = replace(discover(engine, config.table(table_name)), duplicated_keys=duplicated_keys)
        writer = SnapshotWriter(config, source, run_id, name_prefix=f"r{index:03d}-")
        screen = Screen(source.schema)
        rows_read = 0
        with logs.labels(run_id=run_id, table=table_name, key_range=str(index)), _abandoned_on_failure(writer), \
                read_ahead(engine, lambda: stream_rows(engine, source, config.extract.chunk_rows, lower, upper,
                                                   chunk_bytes=config.extract.chunk_bytes)) as chunks:
            repeats = RepeatedKeyCheck(table_name, source.schema)
            for screened, prepared in writer.prepared(chunks, screen):
                repeats.check(prepared.table)
                writer.add_index(screen.indexed(prepared, screened))
                writer.add_rows(prepared.table)
                rows_read += screened.rows
            writer.flush()
            writer.close()
        return RangeOutput(rows_read, writer.parts, writer.index_parts, writer.quarantine_uris,
                           writer.quarantined, writer.fingerprint.to_dict())
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ExtractResult:
    table: str
    run_id: str
    mode: str
    manifest_uri: str
    rows: int
    shipped_rows: int
    deleted_rows: int
    parts: int
    bytes: int
    quarantined: int
    seconds: float


def clock_sequence() -> int:
    """A snapshot sequence from this host's clock alone (`lock.Lease.next_sequence` also orders it
    after every snapshot issued under the table's lock)."""
    return time.time_ns() // 1000


def extract_table(config: Config, engine: Engine, source: SourceTable,
                  on_rows: Callable[[int], None] | None = None, *, force_full: bool = False,
                  next_sequence: Callable[[], int] = clock_sequence, last_issued: int = 0) -> ExtractResult:
    """Streams the table into a snapshot, a delta against the last applied one when possible; its
    manifest's sequence (what orders snapshots for the loader) is `next_sequence()`. `last_issued`:
    the sequence of the table's last snapshot written by anyone (its lease says): past the last
    applied one, a newer snapshot is still on its way, and a delta on the older base would be refused
    once that one is applied, so a full snapshot is taken instead.

    A failure before the manifest leaves no manifest behind, so nothing is loaded and the run
    can simply be repeated.
    """
    base = None if force_full else _delta_base(config, source)
    if base is not None and last_issued > base.manifest.sequence:
        log.info("a snapshot of %s newer than the last applied one was written and is not applied yet: "
                 "full snapshot", source.config.name)
        base = None
    if base is None and config.extract.parallel_ranges > 1:
        bounds = key_boundaries(engine, source, config.extract.parallel_ranges, min_rows=config.extract.chunk_rows)
        if bounds:
            return _extract_ranges(config, engine, source, bounds, on_rows, next_sequence)
    try:
        return _extract(config, engine, source, base, on_rows, next_sequence)
    except KeyOrderError as error:
        log.warning("delta of %s abandoned, taking a full snapshot: %s", source.config.name, error)
        return _extract(config, engine, source, None, on_rows, next_sequence)


def _delta_base(config: Config, source: SourceTable) -> Base | None:
    if config.extract.mode != "delta":
        return None
    table_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{source.config.target_table}"
    base = find_base(config.bigquery.project, config.bigquery.dataset, table_id, source.schema)
    if base is not None and base.chain_length + 1 >= config.extract.full_every:
        return None
    return base


def _extract_ranges(config: Config, engine: Engine, source: SourceTable, bounds: list[tuple],
                    on_rows: Callable[[int], None] | None, next_sequence: Callable[[], int]) -> ExtractResult:
    """A full snapshot as contiguous key ranges extracted by parallel worker processes (hashing is
    CPU-bound, so threads would share one core). Spawned, not forked: gRPC clients do not survive a fork."""
    started = time.monotonic()
    extracted_at = datetime.now(UTC)
    run_id = new_run_id(extracted_at)
    ranges = list(zip([None, *bounds], [*bounds, None], strict=True))
    writer = SnapshotWriter(config, source, run_id)
    with logs.labels(run_id=run_id, table=source.config.name), ProcessPoolExecutor(
        max_workers=len(ranges), mp_context=multiprocessing.get_context("spawn"), initializer=_range_worker,
        initargs=(os.getpid(),),
    ) as pool:
        futures = [pool.submit(extract_range, config, source.config.name, run_id, i, lower, upper,
                               source.duplicated_keys)
                   for i, (lower, upper) in enumerate(ranges)]
        for future in as_completed(futures):
            if on_rows:
                on_rows(future.result().rows_read)
        for future in futures:
            writer.absorb(future.result())
        writer.quarantine_left_out(engine)
        manifest = writer.finish(extracted_at, sequence=next_sequence(), base=None)
        return _result(config, source, writer, manifest, started)


def _range_worker(parent: int) -> None:
    """A range worker leaves interrupts to its parent, which shuts the pool down, and ends when the
    parent is gone: a parent killed outright left its workers reading and uploading for good."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _result(config: Config, source: SourceTable, writer: SnapshotWriter, manifest: Manifest,
            started: float) -> ExtractResult:
    result = ExtractResult(
        table=source.config.name, run_id=manifest.run_id, mode=manifest.mode,
        manifest_uri=gcs.uri(config.gcs.bucket, f"{writer.folder}/{MANIFEST_NAME}"),
        rows=manifest.row_count, shipped_rows=sum(p.rows for p in manifest.parts),
        deleted_rows=manifest.delta.deleted_rows if manifest.delta else 0,
        parts=len(manifest.parts), bytes=sum(p.bytes for p in manifest.parts),
        quarantined=writer.quarantined, seconds=round(time.monotonic() - started, 3),
    )
    logs.event(log, f"{result.mode} snapshot of {source.config.name} written: {result.rows} rows, "
                    f"{result.shipped_rows} shipped, {result.deleted_rows} deleted",
               mode=result.mode, rows=result.rows, shipped=result.shipped_rows, deleted=result.deleted_rows,
               parts=result.parts, bytes=result.bytes, quarantined=result.quarantined, seconds=result.seconds)
    return result


def _extract(config: Config, engine: Engine, source: SourceTable, base: Base | None,
             on_rows: Callable[[int], None] | None, next_sequence: Callable[[], int]) -> ExtractResult:
    started = time.monotonic()
    extracted_at = datetime.now(UTC)
    run_id = new_run_id(extracted_at)
    # the source is read from here on, while the writer, its row model and the base's diff are set up
    with logs.labels(run_id=run_id, table=source.config.name), \
            read_ahead(engine, lambda: stream_rows(engine, source, config.extract.chunk_rows,
                                                   chunk_bytes=config.extract.chunk_bytes)) as chunks:
        writer = SnapshotWriter(config, source, run_id)
        diff, screen = key_diff(base.index, source.schema) if base else (None, Screen(source.schema))
        repeats = RepeatedKeyCheck(source.config.name, source.schema)
        with _abandoned_on_failure(writer):
            for screened, prepared in writer.prepared(chunks, screen):
                repeats.check(prepared.table)
                index = screen.indexed(prepared, screened)
                if diff is None:
                    writer.add_index(index)
                    writer.add_rows(prepared.table)
                else:
                    changes = chunk_changes(diff, prepared, index)
                    shipped = pa.array(changes.changed, pa.int64())
                    writer.add_rows(prepared.table.take(shipped))
                    writer.add_index_patch(index, shipped, screened=screen.screening)
                    writer.add_deleted(changes.deleted)
                if on_rows:
                    on_rows(screened.rows)
            screen.close()
            writer.quarantine_left_out(engine)
            if diff is not None:
                writer.add_deleted(diff.finish())
            manifest = writer.finish(extracted_at, sequence=next_sequence(), base=base)
            return _result(config, source, writer, manifest, started)
