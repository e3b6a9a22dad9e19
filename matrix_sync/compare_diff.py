"""The rows of the differing segments, source against BigQuery, turned into key differences
(`matrix_sync.compare_store.Differences` does the joining, on disk)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from matrix_sync.compare_store import Differences, SourceRow, TargetRow
from shared.hashing import canonical_text
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema

STORED_KEY_HASH, STORED_ROW_HASH = "_stored_key_hash", "_stored_row_hash"
_NUMBERS = ("INT64", "NUMERIC", "BIGNUMERIC", "FLOAT64")  # keys shown in numeric order


def differences_for(schema: TableSchema) -> Differences:
    """An empty store with a column per key column (a keyless table's one "key" is its row hash)."""
    if schema.keyless:
        return Differences()
    return Differences([c.bq_type.upper() in _NUMBERS for c in schema.key_columns])


def key_texts(row: dict[str, object], schema: TableSchema) -> tuple[str | None, ...]:
    if schema.keyless:
        return (str(row[KEY_HASH_COLUMN]),)
    return tuple(canonical_text(row[c.bq_name]) for c in schema.key_columns)


def target_side(rows: Iterable[dict[str, object]], schema: TableSchema) -> Iterator[TargetRow]:
    """Fetched BigQuery rows as the store takes them (a keyless table's rows need only their hash)."""
    for row in rows:
        row_hash = row.get(ROW_HASH_COLUMN)
        stored = row.get(STORED_ROW_HASH)
        yield (str(row[KEY_HASH_COLUMN]), None if row_hash is None else str(row_hash),
               None if stored is None else str(stored), key_texts(row, schema))


def diff_leaves(source_rows: Iterable[SourceRow], target_rows: Iterable[dict[str, object]],
                schema: TableSchema, into: Differences | None = None) -> Differences:
    """The differing keys among the rows of the differing segments, added to `into` (or a new store).
    A keyless table is compared by row hash and number of copies."""
    found = into if into is not None else differences_for(schema)
    found.add_source(source_rows)
    found.add_target(target_side(target_rows, schema))
    found.settle(keyless=schema.keyless)
    return found
