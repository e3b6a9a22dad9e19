"""`compare-keys`: the live source against BigQuery, key by key, without moving either table.

The source is streamed once with the extractor's own preparation and hashing; each row adds to
the fingerprint of its `_key_hash` segment (`shared.segments`) and its key, key hash and row hash go
to a local SQLite file (disk, not memory). Meanwhile, in BigQuery, both hashes of every row are
rebuilt from its data (`shared.bq_hash_sql`), so edits that left the hash columns alone count, into
a staging table, and its segments are fingerprinted at the first level deep enough for the table
(`matrix_sync.compare_bigquery`). Only differing segments are split further, and only the rows of
the few differing leaves are fetched from either side. Kinds of difference:

* ``missing``     in the source, not in BigQuery
* ``extra``       in BigQuery, not in the source (a key edited in BigQuery shows as one extra
                  row plus one missing row)
* ``changed``     same key, different data
* ``duplicate``   a key BigQuery holds more than once
* ``stale-hash``  data equal to the source, but stored hashes that do not describe it (the
                  reconciler would flag the table)

A keyless table is compared by row hash and number of copies: its "key" is the row hash, and a
hash held fewer times in BigQuery than in the source is ``missing``, more times ``duplicate``
(``extra`` when the source has none); an edited row is one missing and one extra hash.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import Engine

from matrix_sync.compare_bigquery import (
    FirstLevel,
    check_target,
    first_level,
    segment_level,
    stale_hashes,
    stored_level,
    target_rows,
)
from matrix_sync.compare_diff import diff_leaves, differences_for
from matrix_sync.compare_repair import Repair, repair_in_bigquery
from matrix_sync.compare_result import (
    CHANGED,
    DUPLICATE,
    EXTRA,
    MISSING,
    STALE_HASH,
    CompareError,
    KeyDifference,
    TableComparison,
)
from matrix_sync.compare_source import CompareProgress, SourceKeys, count_rows, stream_source
from shared import bigquery as bq
from shared import segments
from shared.config import Config, TableConfig
from shared.extractor.source import discover, find_duplicated_keys
from shared.identifiers import quote_bigquery as q
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema

__all__ = ["CHANGED", "DUPLICATE", "EXTRA", "MISSING", "STALE_HASH", "CompareError", "CompareProgress", "KeyDifference",
           "Repair", "TableComparison", "compare_table", "describe_key", "diff_leaves",
           "drop_hash_table", "repair_in_bigquery", "rows_per_second"]
T = TypeVar("T")


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="matrix-compare-") as directory:
        yield Path(directory)


def _new_result(table: TableConfig, schema: TableSchema, target_id: str) -> TableComparison:
    if schema.keyless:
        return TableComparison(table.name, target_id, [ROW_HASH_COLUMN], [], [True], keyless=True)
    return TableComparison(table.name, target_id, [c.name for c in schema.key_columns],
                           [c.bq_name for c in schema.key_columns],
                           [c.bq_type.upper() == "STRING" for c in schema.key_columns],
                           differences=differences_for(schema))


def _drop_when_built(future: Future[FirstLevel]) -> None:
    """For a comparison that failed while BigQuery was still working: its hash table goes too."""
    if not future.cancelled() and future.exception() is None and future.result().hash_table:
        bq.drop_table(future.result().hash_table)


def compare_table(config: Config, engine: Engine, table: TableConfig, progress: CompareProgress | None = None,
                  *, keep_hash_table: bool = False, stored_hashes: bool = False) -> TableComparison:
    """Compares one configured table; the hash table is dropped unless `keep_hash_table` (repairs use it).
    `stored_hashes`: the source against BigQuery's stored hash columns only, with no hash table
    rebuilt from the data: quicker, blind to values edited in BigQuery with their hashes left alone."""
    if stored_hashes and keep_hash_table:
        raise CompareError("a repair needs the hashes rebuilt from BigQuery's data: compare without stored_hashes")
    progress = progress or CompareProgress()
    started = time.monotonic()
    source = find_duplicated_keys(engine, discover(engine, table))
    schema = source.schema
    target_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{table.target_table}"
    result = _new_result(table, schema, target_id)
    if source.duplicated_keys:
        result.note = (f"{source.duplicated_keys:,} key value(s) held by more than one source row left out, "
                       "as every snapshot quarantines them")
    target_rows_hint = check_target(schema, target_id)
    total = count_rows(engine, source)
    progress.started(table.name, total)
    depth = segments.first_depth(max(total or 0, target_rows_hint))
    with _scratch() as directory, ThreadPoolExecutor(max_workers=1, thread_name_prefix="compare-bq") as pool:
        built = pool.submit(stored_level if stored_hashes else first_level, config, schema, target_id, depth,
                            result.stats)
        keys = SourceKeys(directory)
        try:
            result.unconvertible_rows = stream_source(engine, source, keys, config.extract, progress)
            result.source_rows = keys.index.rows
            result.source_seconds = round(time.monotonic() - started, 3)
            if not built.done():
                progress.phase("waiting for BigQuery's stored hashes" if stored_hashes
                               else "waiting for the hashes rebuilt in BigQuery")
            level = built.result()
            result.hash_table, result.deep, result.bigquery_seconds = level.hash_table, level.deep, level.seconds
            result.stored_only = level.stored_only
            try:
                _compare(config.bigquery.project, schema, keys, level, result, progress)
            finally:
                if not keep_hash_table:
                    drop_hash_table(result)
        except BaseException:
            if result.hash_table is None:
                built.add_done_callback(_drop_when_built)
            result.close()
            raise
        finally:
            keys.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _compare(project: str, schema: TableSchema, keys: SourceKeys, level: FirstLevel, result: TableComparison,
             progress: CompareProgress) -> None:
    result.target_rows = sum(s.count for s in level.segments.values())
    progress.phase("comparing segments")
    deeper = segment_level(project, level.read_from, result.stats)

    def bigquery_level(depth: int, parents: list[str] | None) -> segments.Segments:
        return level.segments if depth == level.depth and parents is None else deeper(depth, parents)

    drilled = segments.drill(keys.index.level, bigquery_level, start_depth=level.depth)
    result.levels, result.segments_compared = drilled.levels, drilled.compared_segments
    if drilled.leaves:
        progress.phase(f"fetching {len(drilled.leaves)} differing segment(s)")
        where, params = segments.prefix_condition(q(KEY_HASH_COLUMN), drilled.leaves)
        fetched = target_rows(project, level.read_from, schema, where, params, result.stats,
                              stored_only=level.stored_only)
        heading = f"{len(drilled.leaves)} differing segment(s)"
        diff_leaves(_counted(keys.rows_under(drilled.leaves), progress, f"{heading}: source rows read"),
                    _counted(fetched, progress, f"{heading}: BigQuery rows read"), schema, into=result.differences)
    if result.deep and level.stale_rows:
        stale = stale_hashes(project, level.read_from, schema, result.stats)
        known = result.differences.known([d.key_hash for d in stale])
        result.differences.add(d for d in stale if d.key_hash not in known)


def _counted(rows: Iterator[T], progress: CompareProgress, what: str, every: int = 50_000) -> Iterator[T]:
    """`rows` as they are, with `what` and the count so far shown every `every` rows (a table that
    differs everywhere has millions to read here)."""
    count = 0
    for count, row in enumerate(rows, start=1):
        if count % every == 0:
            progress.phase(f"{what}: {count:,}")
        yield row
    progress.phase(f"{what}: {count:,}")


def drop_hash_table(result: TableComparison) -> None:
    if result.hash_table:
        bq.drop_table(result.hash_table)
        result.hash_table = None


def describe_key(result: TableComparison, key: tuple[str | None, ...]) -> str:
    """``col=value`` pairs; string values quoted so case and trailing spaces are visible."""
    parts = []
    for name, is_string, value in zip(result.key_columns, result.string_keys, key, strict=True):
        shown = "NULL" if value is None else (repr(value) if is_string else value)
        parts.append(f"{name}={shown}")
    return ", ".join(parts)


def rows_per_second(result: TableComparison) -> float:
    return result.source_rows / result.seconds if result.seconds else 0.0
