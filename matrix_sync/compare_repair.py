"""`compare-keys --repair` inside BigQuery, from a comparison's hash table."""
from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from google.cloud import bigquery

from matrix_sync.compare_bigquery import STAGING_TTL, stale_condition
from matrix_sync.compare_diff import STORED_ROW_HASH
from matrix_sync.compare_result import DUPLICATE, EXTRA, CompareError, TableComparison
from shared import bigquery as bq
from shared import bq_jobs
from shared.config import Config
from shared.identifiers import quote_bigquery as q
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN


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
    with _doomed_hashes(result) as doomed:
        if doomed:
            bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE EXISTS (SELECT 1 FROM {hashes} AS C "
                                 f"WHERE C.{q(KEY_HASH_COLUMN)} IN (SELECT key_hash FROM {doomed}) AND {match})",
                        stats=stats)
    deleted = stats.dml_rows - before
    before = stats.dml_rows
    if result.deep:
        stale = stale_condition("C")
        bq_jobs.run(project, f"UPDATE {target} AS T SET {q(KEY_HASH_COLUMN)} = C.{q(KEY_HASH_COLUMN)}, "
                             f"{q(ROW_HASH_COLUMN)} = C.{q(ROW_HASH_COLUMN)} FROM {hashes} AS C "
                             f"WHERE {match} AND {stale}",
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
    with _doomed_hashes(result) as doomed:
        if doomed:
            bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE T.{q(ROW_HASH_COLUMN)} IN "
                                 f"(SELECT key_hash FROM {doomed})", stats=stats)
    if result.deep:
        stale = stale_condition("C")
        bq_jobs.run(project, f"DELETE FROM {target} AS T WHERE T.{q(ROW_HASH_COLUMN)} IN "
                             f"(SELECT C.{q(STORED_ROW_HASH)} FROM {hashes} AS C WHERE {stale})", stats=stats)
    return Repair(stats.dml_rows - before, 0)


@contextmanager
def _doomed_hashes(result: TableComparison) -> Iterator[str | None]:
    """The key hashes of the extra and duplicated rows, loaded into a table beside the hash table
    (quoted name; None when there are none): any number of them, where a query parameter would
    break BigQuery's 10 MB request limit. Dropped afterwards."""
    if not (result.count(EXTRA) or result.count(DUPLICATE)):
        yield None
        return
    assert result.hash_table is not None
    table_id = f"{result.hash_table}_doomed"
    bq.create_table(table_id, [bigquery.SchemaField("key_hash", "STRING")],
                    expires=dt.datetime.now(dt.UTC) + STAGING_TTL)
    try:
        with tempfile.TemporaryDirectory(prefix="matrix-doomed-") as directory:
            path = Path(directory) / "doomed.parquet"
            result.differences.write_hashes(path, EXTRA, DUPLICATE)
            bq.load_parquet_file(table_id, path)
        yield q(*table_id.split("."))
    finally:
        bq.drop_table(table_id)
