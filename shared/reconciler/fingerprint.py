"""Counting and fingerprinting the loaded table inside BigQuery, never downloading it."""
from __future__ import annotations

from dataclasses import dataclass

from shared import bq_jobs
from shared.bq_hash_sql import DEEP_KEY_HASH, DEEP_ROW_HASH, deep_hash_query
from shared.hashing import fingerprint_sql
from shared.identifiers import quote_bigquery as q
from shared.loaded_event import is_latest_of, latest_applied_column, latest_applied_of
from shared.manifest import Manifest
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN


@dataclass(frozen=True)
class Comparison:
    verdict: str
    source_rows: int
    target_rows: int
    source_fingerprint: str
    target_fingerprint: str
    stale_hash_rows: int = 0  # deep mode only: rows whose data no longer produces their stored hashes
    superseded: bool = False  # with_ledger only: the ledger's newest applied run was another one

    @property
    def clean(self) -> bool:
        return self.verdict == "match"


def render(count: int, xor60: int, sum32: int) -> str:
    return f"{count}:{xor60:x}:{sum32:x}"


def target_table(manifest: Manifest) -> str:
    return q(*manifest.target.table_id.split("."))


def compare_with_snapshot(manifest: Manifest, *, deep: bool = False, with_ledger: bool = False,
                          stats: bq_jobs.JobStats | None = None) -> Comparison:
    """Count and fingerprint of the stored row hashes against the manifest's, in one query.

    Deep mode rebuilds both hashes of every row from its data (`shared.bq_hash_sql`) in the same
    query and counts the rows whose stored hashes no longer describe them. `with_ledger` also reads
    the ledger's newest applied run in that query (one job, one snapshot of both tables): when it is
    another run the comparison says `superseded`, and its verdict means nothing."""
    table = target_table(manifest)
    columns, params = fingerprint_sql(q(ROW_HASH_COLUMN)), []
    if with_ledger:
        latest, params = latest_applied_column(manifest.target)
        columns += f", {latest}"
    if deep:
        stale = (f"COUNTIF({q(KEY_HASH_COLUMN)} != {q(DEEP_KEY_HASH)} "
                 f"OR {q(ROW_HASH_COLUMN)} != {q(DEEP_ROW_HASH)}) AS stale")
        sql = f"SELECT {columns}, {stale} FROM ({deep_hash_query(manifest.table_schema, table)})"
    else:
        sql = f"SELECT {columns}, 0 AS stale FROM {table}"
    row = bq_jobs.run(manifest.target.project, sql, params, stats=stats)[0]
    superseded = with_ledger and not is_latest_of(manifest, latest_applied_of(row))
    expected = manifest.fingerprint
    source = render(expected.count, expected.xor60, expected.sum32)
    loaded = render(int(row["row_count"]), int(row["xor60"]), int(row["sum32"]))
    stale_rows = int(row["stale"] or 0)
    verdict = "match" if source == loaded and stale_rows == 0 else "mismatch"
    return Comparison(verdict, expected.count, int(row["row_count"]), source, loaded, stale_rows, superseded)
