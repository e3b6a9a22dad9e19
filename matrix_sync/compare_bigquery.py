"""The BigQuery side of `compare-keys`: one pass over the target table writes every row's key,
rebuilt hashes and stored hashes into a staging "hash table" (`shared.bq_hash_sql`), and one
GROUP BY over it gives the first segment level (`shared.segments.first_depth` deep) with the number
of rows whose stored hashes do not describe their data. Both run while the source streams.

Bytes BigQuery bills: the target table once (every column: the data is what is checked), then the
hash table's four hash columns once for the first level; deeper levels (`_key_hash`, `_row_hash`),
the fetch of differing segments and the stale rows only when there is something to find.
"""
from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from google.cloud import bigquery

from matrix_sync.compare_diff import STORED_KEY_HASH, STORED_ROW_HASH, key_texts
from matrix_sync.compare_result import STALE_HASH, CompareError, KeyDifference
from shared import bigquery as bq
from shared import bq_jobs, segments
from shared.bq_hash_sql import DEEP_KEY_HASH, DEEP_ROW_HASH, DeepHashError, deep_hash_query
from shared.config import Config
from shared.identifiers import quote_bigquery as q
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.topology import STAGING_DATASET_SUFFIX
from shared.validator.live_schema import LiveSchema, standard_type

STAGING_TTL = dt.timedelta(hours=6)
STALE_LIMIT = 10_000


@dataclass(frozen=True)
class FirstLevel:
    """The hash table and its segments at `depth`, as the background pass left them. `read_from` is
    the table deeper levels and fetched rows come from: the hash table, or the target itself when
    only its stored hashes are compared (then there is no hash table to drop)."""

    hash_table: str | None
    deep: bool
    depth: int
    segments: segments.Segments
    stale_rows: int
    seconds: float
    read_from: str

    @property
    def stored_only(self) -> bool:
        return self.hash_table is None


def _keys_then(schema: TableSchema) -> str:
    """The key columns as the start of a select list (nothing for a keyless table)."""
    return "".join(f"{q(c.bq_name)}, " for c in schema.key_columns)


def stale_condition(alias: str = "") -> str:
    """Rows of the hash table whose stored hashes are not the ones rebuilt from their data."""
    a = f"{alias}." if alias else ""
    return (f"({a}{q(KEY_HASH_COLUMN)} != {a}{q(STORED_KEY_HASH)} "
            f"OR {a}{q(ROW_HASH_COLUMN)} != {a}{q(STORED_ROW_HASH)})")


def check_target(schema: TableSchema, target_id: str) -> int:
    """Raises unless the target holds every source column; returns its row count as its metadata
    says (0 when unknown, as on the emulator)."""
    table = bq.get_table(target_id)
    if table is None:
        raise CompareError(f"{target_id} does not exist: run a cycle first")
    live = LiveSchema({f.name.lower(): standard_type(f.field_type) for f in table.schema})
    unreadable = [reason for reason in map(live.why_unreadable, schema.columns) if reason]
    if unreadable:
        raise CompareError(f"{target_id} does not hold the source's columns ({'; '.join(unreadable)}): a cycle "
                           "applies new columns and widenings; a snapshot it refused names the change in "
                           "`matrix-sync status`")
    return int(table.num_rows or 0)


def hash_table_select(schema: TableSchema, target: str) -> tuple[str, bool]:
    """The SELECT filling the hash table from `target` (a quoted table): key columns, rebuilt key and
    row hash, stored key and row hash; the bool says whether the hashes were rebuilt from the data
    (False: the table has columns that cannot be, its stored hashes are used twice)."""
    keys = _keys_then(schema)
    try:
        rebuilt = deep_hash_query(schema.hash_keyed(), target)
    except DeepHashError:
        return (f"SELECT {keys}{q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)}, {q(KEY_HASH_COLUMN)}, "
                f"{q(ROW_HASH_COLUMN)} FROM {target}"), False
    return (f"SELECT {keys}{q(DEEP_KEY_HASH)}, {q(DEEP_ROW_HASH)}, {q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)} "
            f"FROM ({rebuilt})"), True


def build_hash_table(config: Config, schema: TableSchema, target_id: str, stats: bq_jobs.JobStats) -> tuple[str, bool]:
    """A staging table with every BigQuery row's key, rebuilt hashes and stored hashes, clustered by
    key hash (segments are key hash prefixes); the bool as in `hash_table_select`."""
    project, dataset = config.bigquery.project, config.bigquery.dataset + STAGING_DATASET_SUFFIX
    bq.ensure_dataset(project, dataset, location=config.bigquery.location, default_table_expiration=STAGING_TTL)
    table_id = f"{project}.{dataset}.compare_{target_id.split('.')[-1]}_{secrets.token_hex(4)}"
    fields = [bigquery.SchemaField(c.bq_name, c.bq_type) for c in schema.key_columns]
    fields += [bigquery.SchemaField(name, "STRING")
               for name in (KEY_HASH_COLUMN, ROW_HASH_COLUMN, STORED_KEY_HASH, STORED_ROW_HASH)]
    bq.create_table(table_id, fields, clustering=[KEY_HASH_COLUMN], expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    select, deep = hash_table_select(schema, q(*target_id.split(".")))
    columns = ", ".join(q(f.name) for f in fields)
    try:
        bq_jobs.run(project, f"INSERT INTO {q(*table_id.split('.'))} ({columns}) {select}", stats=stats)
    except BaseException:
        bq.drop_table(table_id)
        raise
    return table_id, deep


def level_sql(hash_table: str, depth: int, parents: list[str] | None,
              *, with_stale: bool = False) -> tuple[str, list[bigquery.ArrayQueryParameter]]:
    extra = f"COUNTIF({stale_condition()}) AS stale" if with_stale else ""
    return segments.segment_sql(q(*hash_table.split(".")), key_hash=q(KEY_HASH_COLUMN), row_hash=q(ROW_HASH_COLUMN),
                                depth=depth, parents=parents, extra=extra)


def first_level(config: Config, schema: TableSchema, target_id: str, depth: int,
                stats: bq_jobs.JobStats) -> FirstLevel:
    """Builds the hash table and reads its segments at `depth`: two jobs, whatever the table size."""
    started = time.monotonic()
    hash_table, deep = build_hash_table(config, schema, target_id, stats)
    try:
        sql, params = level_sql(hash_table, depth, None, with_stale=deep)
        rows = bq_jobs.run(config.bigquery.project, sql, params, stats=stats)
    except BaseException:
        bq.drop_table(hash_table)
        raise
    stale = sum(int(r["stale"] or 0) for r in rows) if deep else 0
    return FirstLevel(hash_table, deep, depth, segments.rows_to_segments(rows), stale,
                      round(time.monotonic() - started, 3), hash_table)


def stored_level(config: Config, schema: TableSchema, target_id: str, depth: int,
                 stats: bq_jobs.JobStats) -> FirstLevel:
    """The segments of the target's stored `_key_hash`/`_row_hash` at `depth`: one GROUP BY over two
    columns, no hash table. What it cannot see: a value edited in BigQuery with its hashes left as
    they were (the rebuilding `first_level` sees that)."""
    started = time.monotonic()
    sql, params = level_sql(target_id, depth, None)
    rows = bq_jobs.run(config.bigquery.project, sql, params, stats=stats)
    unreadable = sum(int(r["row_count"]) for r in rows if not segments.is_hex_prefix(r["segment"]))
    if unreadable:
        raise CompareError(f"{target_id}: {unreadable:,} row(s) hold no hash in {KEY_HASH_COLUMN} (written outside "
                           "the pipeline?), so their stored hashes cannot be compared; run compare-keys without "
                           "--stored-hashes, which rebuilds every hash from the data")
    return FirstLevel(None, False, depth, segments.rows_to_segments(rows), 0, round(time.monotonic() - started, 3),
                      target_id)


def segment_level(project: str, hash_table: str, stats: bq_jobs.JobStats) -> segments.SideLevel:
    def level(depth: int, parents: list[str] | None) -> segments.Segments:
        sql, params = level_sql(hash_table, depth, parents)
        return segments.rows_to_segments(bq_jobs.run(project, sql, params, stats=stats))
    return level


def target_rows(project: str, hash_table: str, schema: TableSchema, where: str,
                params: list[bigquery.ArrayQueryParameter], stats: bq_jobs.JobStats,
                *, stored_only: bool = False) -> Iterator[dict[str, object]]:
    """Rows of the hash table (or, `stored_only`, of the target, whose stored hashes stand for both),
    read a page at a time."""
    stored = (f"{q(KEY_HASH_COLUMN)} AS {q(STORED_KEY_HASH)}, {q(ROW_HASH_COLUMN)} AS {q(STORED_ROW_HASH)}"
              if stored_only else f"{q(STORED_KEY_HASH)}, {q(STORED_ROW_HASH)}")
    sql = (f"SELECT {_keys_then(schema)}{q(KEY_HASH_COLUMN)}, {q(ROW_HASH_COLUMN)}, {stored} "
           f"FROM {q(*hash_table.split('.'))} WHERE {where}")
    return (dict(r.items()) for r in bq_jobs.rows(project, sql, params, stats=stats))


def stale_hashes(project: str, hash_table: str, schema: TableSchema, stats: bq_jobs.JobStats) -> list[KeyDifference]:
    """Rows whose stored hashes do not describe their data: the first STALE_LIMIT by key hash."""
    where = f"{stale_condition()} ORDER BY {q(KEY_HASH_COLUMN)} LIMIT {STALE_LIMIT}"
    return [KeyDifference(STALE_HASH, key_texts(row, schema), str(row[KEY_HASH_COLUMN]),
                          "data equals the source; stored hash columns do not describe it")
            for row in target_rows(project, hash_table, schema, where, [], stats)]
