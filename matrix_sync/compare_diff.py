"""The rows of the differing segments, source against BigQuery, turned into key differences."""
from __future__ import annotations

from collections.abc import Iterator

from matrix_sync.compare_result import CHANGED, DUPLICATE, EXTRA, MISSING, KeyDifference
from shared.hashing import canonical_text
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema

STORED_KEY_HASH, STORED_ROW_HASH = "_stored_key_hash", "_stored_row_hash"
SourceRows = Iterator[tuple[str, str, tuple[str | None, ...]]]


def key_texts(row: dict[str, object], schema: TableSchema) -> tuple[str | None, ...]:
    if schema.keyless:
        return (str(row[KEY_HASH_COLUMN]),)
    return tuple(canonical_text(row[c.bq_name]) for c in schema.key_columns)


def diff_leaves(source_rows: SourceRows, target_rows: list[dict[str, object]],
                schema: TableSchema) -> list[KeyDifference]:
    """The differing keys among the rows of the differing segments."""
    if schema.keyless:
        return diff_copies(source_rows, target_rows)
    source = {kh: (rh, key) for kh, rh, key in source_rows}
    target: dict[str, list[dict[str, object]]] = {}
    for row in target_rows:
        target.setdefault(str(row[KEY_HASH_COLUMN]), []).append(row)
    found = []
    for kh in sorted(source.keys() | target.keys()):
        in_source, in_target = source.get(kh), target.get(kh, [])
        if in_source is None:
            found.append(KeyDifference(EXTRA, key_texts(in_target[0], schema), kh,
                                       f"{len(in_target)} row(s) in BigQuery only"))
        elif not in_target:
            found.append(KeyDifference(MISSING, in_source[1], kh, "in the source only"))
        elif len(in_target) > 1:
            found.append(KeyDifference(DUPLICATE, in_source[1], kh, f"{len(in_target)} rows in BigQuery"))
        elif in_target[0][ROW_HASH_COLUMN] != in_source[0]:
            untouched = in_target[0][STORED_ROW_HASH] == in_source[0]
            found.append(KeyDifference(CHANGED, in_source[1], kh, "data edited in BigQuery, hash columns untouched"
                                       if untouched else "row differs from the source"))
    return found


def diff_copies(source_rows: SourceRows, target_rows: list[dict[str, object]]) -> list[KeyDifference]:
    """A keyless table's differing row hashes: copies in the source against copies in BigQuery."""
    source: dict[str, int] = {}
    for kh, _, _ in source_rows:
        source[kh] = source.get(kh, 0) + 1
    target: dict[str, int] = {}
    for row in target_rows:
        kh = str(row[KEY_HASH_COLUMN])
        target[kh] = target.get(kh, 0) + 1
    found = []
    for kh in sorted(source.keys() | target.keys()):
        wanted, held = source.get(kh, 0), target.get(kh, 0)
        if wanted == held:
            continue
        kind = MISSING if held < wanted else EXTRA if wanted == 0 else DUPLICATE
        found.append(KeyDifference(kind, (kh,), kh, f"{wanted} cop{'y' if wanted == 1 else 'ies'} in the source, "
                                                    f"{held} in BigQuery"))
    return found
