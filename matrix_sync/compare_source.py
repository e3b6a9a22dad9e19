"""The source side of `compare-keys`: every chunk prepared and hashed by the extractor's own
`ChunkPreparer` (columnar where it can, per row where it must), segment fingerprints kept in
memory, keys and hashes spilled to a temporary Arrow file (bounded memory)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared import segments
from shared.config import ExtractConfig
from shared.extractor.prefetch import read_ahead
from shared.extractor.prepare import ChunkPreparer, Prepared
from shared.extractor.prepare_ahead import default_workers, prepared_in_order
from shared.extractor.source import SourceTable, stream_rows
from shared.hashing import canonical_text
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN


class CompareProgress:
    """Callbacks for progress display; the default shows nothing."""

    def started(self, table: str, rows: int | None) -> None: ...
    def rows(self, count: int) -> None: ...
    def phase(self, text: str) -> None: ...


class SourceKeys:
    """Segment fingerprints in memory (`shared.segments.SegmentIndex`); every row's key values, key
    hash and row hash in a temporary Arrow file, read back only for the differing segments."""

    def __init__(self, directory: Path) -> None:
        self.index = segments.SegmentIndex()
        self._path = directory / "source-keys.arrow"
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._key_count = 0

    def add(self, prepared: Prepared) -> None:
        self.index.add_many(prepared.key_hashes(), prepared.row_hashes())
        table = prepared.table
        kept = table.select([*prepared.key_positions, table.schema.get_field_index(KEY_HASH_COLUMN),
                             table.schema.get_field_index(ROW_HASH_COLUMN)])
        if self._writer is None:
            self._key_count = len(prepared.key_positions)
            self._writer = pa.ipc.new_file(str(self._path), kept.schema)
        self._writer.write_table(kept)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def rows_under(self, prefixes: list[str]) -> Iterator[tuple[str, str, tuple[str | None, ...]]]:
        """(key hash, row hash, canonical key texts) of every row whose key hash starts with one of
        `prefixes`."""
        if self._writer is None or not prefixes:
            return
        by_length: dict[int, list[str]] = {}
        for prefix in prefixes:
            by_length.setdefault(len(prefix), []).append(prefix)
        with pa.memory_map(str(self._path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                key_hash = batch.column(self._key_count)
                wanted = None
                for length, values in by_length.items():
                    hit = pc.is_in(pc.utf8_slice_codeunits(key_hash, 0, length), value_set=pa.array(values))
                    wanted = hit if wanted is None else pc.or_(wanted, hit)
                for row in batch.filter(wanted).to_pylist():
                    values = list(row.values())
                    key = tuple(canonical_text(v) for v in values[: self._key_count])
                    yield values[self._key_count], values[self._key_count + 1], key

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def count_rows(engine: Engine, source: SourceTable) -> int | None:
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(source.table)).scalar_one())
    except Exception:  # a progress total is a nicety; never fail a comparison over it
        return None


def stream_source(engine: Engine, source: SourceTable, keys: SourceKeys, extract: ExtractConfig,
                  progress: CompareProgress) -> int:
    """Prepares every source chunk as the extractor does, in its chunks; returns the rows it would
    quarantine (not convertible, or breaking the declared schema), which are not expected in BigQuery."""
    unconvertible = 0
    with read_ahead(engine, lambda: stream_rows(engine, source, extract.chunk_rows,
                                                chunk_bytes=extract.chunk_bytes)) as chunks:
        for rows, (prepared, rejected) in prepared_in_order(chunks, ChunkPreparer(source.schema), default_workers()):
            unconvertible += len(rejected)
            keys.add(prepared)
            progress.rows(rows)
    keys.finish()
    return unconvertible
