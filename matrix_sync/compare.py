"""`compare-keys`: the live source against BigQuery, key by key, without moving either table.

The source is streamed once with the extractor's own converters and `RowHasher`; each row adds to
the fingerprint of its `_key_hash` segment (`shared.segments`) and its key, key hash and row hash go
to a local SQLite file (disk, not memory). In BigQuery, both hashes of every row are rebuilt from
its data (`shared.bq_hash_sql`), so edits that left the hash columns alone count, into a staging
table. Segments are compared level by level; only the rows of the few differing segments are
fetched from either side. Kinds of difference:

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

import datetime as dt
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import bigquery
from sqlalchemy.engine import Engine

from matrix_sync.compare_source import CompareProgress, SourceKeys, count_rows, stream_source
from shared import bigquery as bq
from shared import bq_jobs, segments
from shared.bq_hash_sql import DEEP_KEY_HASH, DEEP_ROW_HASH, DeepHashError, deep_hash_query
from shared.config import Config, TableConfig
from shared.extractor.source import discover
from shared.hashing import canonical_text
from shared.identifiers import quote_bigquery as q
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.topology import STAGING_DATASET_SUFFIX

MISSING, EXTRA, CHANGED, DUPLICATE, STALE_HASH = "missing", "extra", "changed", "duplicate", "stale-hash"
STORED_KEY_HASH, STORED_ROW_HASH = "_stored_key_hash", "_stored_row_hash"
STAGING_TTL = dt.timedelta(hours=6)
_STALE_LIMIT = 10_000


class CompareError(RuntimeError):
    """A table that cannot be compared (not loaded yet, columns missing in BigQuery)."""


@dataclass(frozen=True)
class KeyDifference:
    kind: str
    key: tuple[str | None, ...]
    key_hash: str
    detail: str = ""


@dataclass
class TableComparison:
    table: str
    target: str
    key_columns: list[str]
    key_bq_names: list[str]
    string_keys: list[bool]
    deep: bool = True
    source_rows: int = 0
    target_rows: int = 0
    unconvertible_rows: int = 0
    differences: list[KeyDifference] = field(default_factory=list)
    levels: int = 0
    segments_compared: int = 0
    source_seconds: float = 0.0
    seconds: float = 0.0
    stats: bq_jobs.JobStats = field(default_factory=bq_jobs.JobStats)
    hash_table: str | None = None
    note: str = ""
    keyless: bool = False

    @property
    def clean(self) -> bool:
        return not self.differences

    def count(self, kind: str) -> int:
        return sum(1 for d in self.differences if d.kind == kind)

    def hashes(self, *kinds: str) -> list[str]:
        return sorted({d.key_hash for d in self.differences if d.kind in kinds})


# --- the BigQuery side --------------------------------------------------------------------------


def _keys_then(schema: TableSchema) -> str:
    """The key columns as the start of a select list (nothing for a keyless table)."""
    return "".join(f"{q(c.bq_name)}, " for c in schema.key_columns)


def _check_target(schema: TableSchema, target_id: str) -> None:
    table = bq.get_table(target_id)
    if table is None:
        raise CompareError(f"{target_id} does not exist: run a cycle first")
    have = {f.name.lower() for f in table.schema}
    missing = [c.bq_name for c in schema.columns if c.bq_name.lower() not in have]
    if missing:
        raise CompareError(f"{target_id} lacks source column(s) {', '.join(missing)}: run a cycle first")


def build_hash_table(config: Config, schema: TableSchema, target_id: str, stats: bq_jobs.JobStats) -> tuple[str, bool]:
    """A staging table with every BigQuery row's key, rebuilt hashes and stored hashes; the bool
    says whether the hashes were rebuilt from the data (False: the table has columns that cannot be)."""
    project, dataset = config.bigquery.project, config.bigquery.dataset + STAGING_DATASET_SUFFIX
    bq.ensure_dataset(project, dataset, location=config.bigquery.location, default_table_expiration=STAGING_TTL)
    table_id = f"{project}.{dataset}.compare_{target_id.split('.')[-1]}_{secrets.token_hex(4)}"
    fields = [bigquery.SchemaField(c.bq_name, c.bq_type) for c in schema.key_columns]
    fields += [bigquery.SchemaField(name, "STRING")
               for name in (KEY_HASH_COLUMN, ROW_HASH_COLUMN, STORED_KEY_HASH, STORED_ROW_HASH)]
    bq.create_table(table_id, fields, expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    keys = _keys_then(schema)
    target = q(*target_id.split("."))
    try:
        select = (f"SELECT {keys}{q(DEEP_KEY_HASH)}, {q(DEEP_ROW_HASH)}, {q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)} "
                  f"FROM ({deep_hash_query(schema.hash_keyed(), target)})")
        deep = True
    except DeepHashError:
        select = (f"SELECT {keys}{q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)}, {q(KEY_HASH_COLUMN)}, "
                  f"{q(ROW_HASH_COLUMN)} FROM {target}")
        deep = False
    columns = ", ".join(q(f.name) for f in fields)
    bq_jobs.run(project, f"INSERT INTO {q(*table_id.split('.'))} ({columns}) {select}", stats=stats)
    return table_id, deep


def _bigquery_level(project: str, hash_table: str, stats: bq_jobs.JobStats) -> segments.SideLevel:
    def level(depth: int, parents: list[str] | None) -> segments.Segments:
        sql, params = segments.segment_sql(q(*hash_table.split(".")), key_hash=q(KEY_HASH_COLUMN),
                                           row_hash=q(ROW_HASH_COLUMN), depth=depth, parents=parents)
        return segments.rows_to_segments(bq_jobs.run(project, sql, params, stats=stats))
    return level


def _target_rows(project: str, hash_table: str, schema: TableSchema, where: str,
                 params: list[bigquery.ArrayQueryParameter], stats: bq_jobs.JobStats) -> list[dict[str, object]]:
    sql = (f"SELECT {_keys_then(schema)}{q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)}, {q(STORED_KEY_HASH)}, "
           f"{q(STORED_ROW_HASH)} "
           f"FROM {q(*hash_table.split('.'))} WHERE {where}")
    return [dict(r.items()) for r in bq_jobs.run(project, sql, params, stats=stats)]


def _key_texts(row: dict[str, object], schema: TableSchema) -> tuple[str | None, ...]:
    if schema.keyless:
        return (str(row[KEY_HASH_COLUMN]),)
    return tuple(canonical_text(row[c.bq_name]) for c in schema.key_columns)


def diff_leaves(source_rows: Iterator[tuple[str, str, tuple[str | None, ...]]], target_rows: list[dict[str, object]],
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
            found.append(KeyDifference(EXTRA, _key_texts(in_target[0], schema), kh,
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


def _stale_hashes(project: str, hash_table: str, schema: TableSchema, known: set[str],
                  stats: bq_jobs.JobStats) -> list[KeyDifference]:
    where = (f"({q(KEY_HASH_COLUMN)} != {q(STORED_KEY_HASH)} OR {q(ROW_HASH_COLUMN)} != {q(STORED_ROW_HASH)}) "
             f"ORDER BY {q(KEY_HASH_COLUMN)} LIMIT {_STALE_LIMIT}")
    return [KeyDifference(STALE_HASH, _key_texts(row, schema), str(row[KEY_HASH_COLUMN]),
                          "data equals the source; stored hash columns do not describe it")
            for row in _target_rows(project, hash_table, schema, where, [], stats)
            if row[KEY_HASH_COLUMN] not in known]


def diff_copies(source_rows: Iterator[tuple[str, str, tuple[str | None, ...]]],
                target_rows: list[dict[str, object]]) -> list[KeyDifference]:
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


@contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="matrix-compare-") as directory:
        yield Path(directory)


def compare_table(config: Config, engine: Engine, table: TableConfig,
                  progress: CompareProgress | None = None, *, keep_hash_table: bool = False) -> TableComparison:
    """Compares one configured table; the hash table is dropped unless `keep_hash_table` (repairs use it)."""
    progress = progress or CompareProgress()
    started = time.monotonic()
    source = discover(engine, table)
    schema = source.schema
    project = config.bigquery.project
    target_id = f"{project}.{config.bigquery.dataset}.{table.target_table}"
    if schema.keyless:
        result = TableComparison(table.name, target_id, [ROW_HASH_COLUMN], [], [True], keyless=True)
    else:
        result = TableComparison(table.name, target_id, [c.name for c in schema.key_columns],
                                 [c.bq_name for c in schema.key_columns],
                                 [c.bq_type.upper() == "STRING" for c in schema.key_columns])
    _check_target(schema, target_id)
    with _scratch() as directory:
        keys = SourceKeys(directory)
        try:
            progress.started(table.name, count_rows(engine, source))
            result.unconvertible_rows = stream_source(engine, source, keys, config.extract.chunk_rows, progress)
            result.source_rows = keys.index.rows
            result.source_seconds = round(time.monotonic() - started, 3)
            progress.phase("rebuilding hashes in BigQuery")
            result.hash_table, result.deep = build_hash_table(config, schema, target_id, result.stats)
            try:
                _compare(project, schema, keys, result, progress)
            finally:
                if not keep_hash_table:
                    drop_hash_table(result)
        finally:
            keys.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _compare(project: str, schema: TableSchema, keys: SourceKeys, result: TableComparison,
             progress: CompareProgress) -> None:
    assert result.hash_table is not None
    bigquery_level = _bigquery_level(project, result.hash_table, result.stats)
    total = bigquery_level(1, None)
    result.target_rows = sum(s.count for s in total.values())
    progress.phase("comparing segments")
    levels = {1: total}

    def cached_bigquery(depth: int, parents: list[str] | None) -> segments.Segments:
        return levels.pop(depth) if depth in levels and parents is None else bigquery_level(depth, parents)

    drilled = segments.drill(keys.index.level, cached_bigquery)
    result.levels, result.segments_compared = drilled.levels, drilled.compared_segments
    if drilled.leaves:
        progress.phase(f"fetching {len(drilled.leaves)} differing segment(s)")
        where, params = segments.prefix_condition(q(KEY_HASH_COLUMN), drilled.leaves)
        target_rows = _target_rows(project, result.hash_table, schema, where, params, result.stats)
        result.differences = diff_leaves(keys.rows_under(drilled.leaves), target_rows, schema)
    if result.deep:
        known = {d.key_hash for d in result.differences}
        result.differences += _stale_hashes(project, result.hash_table, schema, known, result.stats)


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


@dataclass(frozen=True)
class Repair:
    deleted: int
    restamped: int


def repair_in_bigquery(config: Config, result: TableComparison) -> Repair:
    """Deletes extra and duplicated rows, and gives every remaining row whose stored hashes do not
    describe its data the hashes of its data, so the next full load rewrites it where it differs.
    Needs the comparison's hash table (`keep_hash_table=True`)."""
    if result.hash_table is None:
        raise CompareError("the comparison's hash table is gone; compare again with keep_hash_table=True")
    if result.keyless:
        return _repair_keyless(config, result)
    project = config.bigquery.project
    target, hashes = q(*result.target.split(".")), q(*result.hash_table.split("."))
    key_names = [q(c) for c in result.key_bq_names]
    match = " AND ".join(f"C.{k} = T.{k}" for k in key_names)
    stats = result.stats
    before = stats.dml_rows
    doomed = result.hashes(EXTRA, DUPLICATE)
    if doomed:
        bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE EXISTS (SELECT 1 FROM {hashes} AS C "
                             f"WHERE C.{q(KEY_HASH_COLUMN)} IN UNNEST(@doomed) AND {match})",
                    [bigquery.ArrayQueryParameter("doomed", "STRING", doomed)], stats=stats)
    deleted = stats.dml_rows - before
    before = stats.dml_rows
    if result.deep:
        stale = (f"(C.{q(KEY_HASH_COLUMN)} != C.{q(STORED_KEY_HASH)} OR C.{q(ROW_HASH_COLUMN)} != C.{q(STORED_ROW_HASH)})")
        bq_jobs.run(project, f"UPDATE {target} AS T SET {q(KEY_HASH_COLUMN)} = C.{q(KEY_HASH_COLUMN)}, "
                             f"{q(ROW_HASH_COLUMN)} = C.{q(ROW_HASH_COLUMN)} FROM {hashes} AS C WHERE {match} AND {stale}",
                    stats=result.stats)
    return Repair(deleted, result.stats.dml_rows - before)


def _repair_keyless(config: Config, result: TableComparison) -> Repair:
    """Every copy of an extra or duplicated row hash is deleted, and (deep) every copy under a stored
    hash that no longer describes its row's data, since nothing else identifies such a row; the full
    re-extraction that follows inserts the source's copies again. Nothing is re-stamped."""
    assert result.hash_table is not None
    project, stats = config.bigquery.project, result.stats
    target, hashes = q(*result.target.split(".")), q(*result.hash_table.split("."))
    before = stats.dml_rows
    doomed = result.hashes(EXTRA, DUPLICATE)
    if doomed:
        bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE T.{q(ROW_HASH_COLUMN)} IN UNNEST(@doomed)",
                    [bigquery.ArrayQueryParameter("doomed", "STRING", doomed)], stats=stats)
    if result.deep:
        stale = (f"C.{q(ROW_HASH_COLUMN)} != C.{q(STORED_ROW_HASH)} "
                 f"OR C.{q(KEY_HASH_COLUMN)} != C.{q(STORED_KEY_HASH)}")
        bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE T.{q(ROW_HASH_COLUMN)} IN "
                             f"(SELECT C.{q(STORED_ROW_HASH)} FROM {hashes} AS C WHERE {stale})", stats=stats)
    return Repair(stats.dml_rows - before, 0)
