"""Each object of the snapshot exists with the size and MD5 the manifest promises, and each part the
loader is about to load is a readable Parquet file with the columns and row count the manifest
promises. One metadata call per object; only the footer is read (a ranged read of its last bytes,
of the generation whose MD5 was checked), never the data, so a truncated file or one of another
table is refused with its reason before BigQuery is asked to load it, instead of failing the load
job on every redelivery. A few objects are checked at a time."""
from __future__ import annotations

import contextvars
import io
from collections.abc import Buffer
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from shared import bigquery as bq
from shared import gcs, key_index
from shared.loader.errors import RefusedError
from shared.loader.staging import deleted_key_fields
from shared.manifest import Manifest, Part
from shared.types import arrow_type

_FOOTER_READ_BYTES = 256 * 1024
_CHECKED_AT_ONCE = 8


@dataclass(frozen=True)
class _Footer:
    """What a part's footer must say: its columns and, for the rows, their kinds."""

    columns: list[str]
    types: list[pa.DataType] | None = None


def check_parts(manifest: Manifest) -> None:
    """Raises RefusedError for the first object (in the manifest's order) that is missing, differs
    from the manifest, or (a part to load, an index patch) has a footer other than the manifest's."""
    footers = _footers(manifest)
    with ThreadPoolExecutor(max_workers=_CHECKED_AT_ONCE, thread_name_prefix="part-check") as pool:
        # each in a copy of this context, so what it logs carries the event's labels
        checks = [pool.submit(contextvars.copy_context().run, _check_part, part, footers.get(part.uri))
                  for part in manifest.all_parts]
        for check in checks:
            check.result()


def _footers(manifest: Manifest) -> dict[str, _Footer]:
    """By URI; a full snapshot's key index is checked by size and MD5 only."""
    fields = bq.table_fields(manifest.table_schema)
    rows = _Footer([f.name for f in fields], [arrow_type(f.field_type) for f in fields])
    footers = {p.uri: rows for p in manifest.parts}
    if manifest.delta is not None:
        deleted = _Footer([f.name for f in deleted_key_fields(manifest)])
        patch = _Footer(key_index.index_schema(manifest.table_schema).names)
        footers |= {p.uri: deleted for p in manifest.delta.deleted_parts}
        footers |= {p.uri: patch for p in manifest.delta.index_patch_parts}
    return footers


def _check_part(part: Part, footer: _Footer | None) -> None:
    stored = gcs.info(part.uri)
    if stored is None:
        raise RefusedError(f"part {part.uri} is missing")
    if stored.md5 != part.md5 or stored.size != part.bytes:
        raise RefusedError(f"part {part.uri} does not match the manifest: {stored.size} bytes with MD5 "
                           f"{stored.md5}, expected {part.bytes} bytes with MD5 {part.md5}")
    if footer is not None:
        _check_footer(part, _footer(part, stored), footer)


def _check_footer(part: Part, metadata: pq.FileMetaData, footer: _Footer) -> None:
    """`footer.types`: what the columns must hold, by kind (a text where a number belongs fails every
    load job the same way, so it is refused here, not retried until the dead-letter topic)."""
    found = metadata.schema.to_arrow_schema()
    if found.names != footer.columns:
        raise RefusedError(f"part {part.uri} has the columns {found.names}, the manifest's schema says "
                           f"{footer.columns}")
    if metadata.num_rows != part.rows:
        raise RefusedError(f"part {part.uri} holds {metadata.num_rows} rows, the manifest says {part.rows}")
    wrong = [f"{field.name} ({field.type}, expected {wanted})"
             for field, wanted in zip(found, footer.types or [], strict=False) if _kind(field.type) != _kind(wanted)]
    if wrong:
        raise RefusedError(f"part {part.uri} holds column(s) of another type than the manifest's schema: "
                           f"{', '.join(wrong)}")


def _kind(arrow: pa.DataType) -> str:
    """Types a load job takes into one BigQuery type alike (string or large_string, any integer width)."""
    checks = (("string", pa.types.is_string), ("string", pa.types.is_large_string), ("bytes", pa.types.is_binary),
              ("bytes", pa.types.is_large_binary), ("integer", pa.types.is_integer),
              ("float", pa.types.is_floating), ("decimal", pa.types.is_decimal), ("bool", pa.types.is_boolean),
              ("date", pa.types.is_date), ("timestamp", pa.types.is_timestamp), ("time", pa.types.is_time))
    return next((kind for kind, matches in checks if matches(arrow)), str(arrow))


def _footer(part: Part, stored: gcs.ObjectInfo) -> pq.FileMetaData:
    """Of the generation checked (a replaced object is not found: read again later)."""
    try:
        return pq.ParquetFile(io.BufferedReader(_Generation(stored), _FOOTER_READ_BYTES)).metadata
    except (pa.ArrowInvalid, OSError) as error:
        raise RefusedError(f"part {part.uri} is not a readable Parquet file: {str(error).splitlines()[0]}") from None


class _Generation(io.RawIOBase):
    """One generation of an object as a seekable file, each read a ranged GET (the size is known)."""

    def __init__(self, stored: gcs.ObjectInfo) -> None:
        self._stored, self._size, self._position = stored, stored.size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = min(max(origin + offset, 0), self._size)
        return self._position

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), self._size - self._position)
        if count <= 0:
            return 0
        data = gcs.read_range(self._stored.uri, self._position, self._position + count - 1, self._stored.generation)
        view[:len(data)] = data
        self._position += len(data)
        return len(data)
