"""Each part the loader is about to load is a readable Parquet file with the columns and row count the
manifest promises. Only the footer is read (a ranged read of its last bytes), never the data, so a
truncated file or one of another table is refused with its reason before BigQuery is asked to load
it, instead of failing the load job on every redelivery."""
from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from shared import bigquery as bq
from shared import gcs, key_index
from shared.clients import storage_client
from shared.loader.errors import RefusedError
from shared.loader.staging import deleted_key_fields
from shared.manifest import Manifest, Part
from shared.types import arrow_type

_FOOTER_READ_BYTES = 256 * 1024


def check_part_footers(manifest: Manifest) -> None:
    columns = [f.name for f in bq.table_fields(manifest.table_schema)]
    _check(manifest.parts, columns, [arrow_type(f.field_type) for f in bq.table_fields(manifest.table_schema)])
    if manifest.delta is not None:
        _check(manifest.delta.deleted_parts, [f.name for f in deleted_key_fields(manifest)])
        _check(manifest.delta.index_patch_parts, key_index.index_schema(manifest.table_schema).names)


def _check(parts: Sequence[Part], columns: list[str], types: list[pa.DataType] | None = None) -> None:
    """`types`: what the columns must hold, by kind (a text where a number belongs fails every load
    job the same way, so it is refused here, not retried until the dead-letter topic)."""
    for part in parts:
        metadata = _footer(part)
        found = metadata.schema.to_arrow_schema()
        if found.names != columns:
            raise RefusedError(f"part {part.uri} has the columns {found.names}, the manifest's schema says {columns}")
        if metadata.num_rows != part.rows:
            raise RefusedError(f"part {part.uri} holds {metadata.num_rows} rows, the manifest says {part.rows}")
        wrong = [f"{field.name} ({field.type}, expected {wanted})"
                 for field, wanted in zip(found, types or [], strict=False) if _kind(field.type) != _kind(wanted)]
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


def _footer(part: Part) -> pq.FileMetaData:
    bucket, name = gcs.split_uri(part.uri)
    try:
        with storage_client().bucket(bucket).blob(name).open("rb", chunk_size=_FOOTER_READ_BYTES) as stream:
            return pq.ParquetFile(stream).metadata
    except (pa.ArrowInvalid, OSError) as error:
        raise RefusedError(f"part {part.uri} is not a readable Parquet file: {str(error).splitlines()[0]}") from None
