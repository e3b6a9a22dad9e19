"""Counting and fingerprinting the loaded table inside BigQuery, never downloading it."""
from __future__ import annotations

from dataclasses import dataclass

from shared import bigquery as bq
from shared.hashing import fingerprint_sql
from shared.identifiers import quote_bigquery
from shared.manifest import Manifest
from shared.schema import ROW_HASH_COLUMN


@dataclass(frozen=True)
class Comparison:
    verdict: str
    source_rows: int
    target_rows: int
    source_fingerprint: str
    target_fingerprint: str


def _render(count: int, xor60: int, sum32: int) -> str:
    return f"{count}:{xor60:x}:{sum32:x}"


def compare_with_snapshot(manifest: Manifest) -> Comparison:
    target = manifest.target
    sql = f"SELECT {fingerprint_sql(quote_bigquery(ROW_HASH_COLUMN))} FROM {quote_bigquery(*target.table_id.split('.'))}"
    row = bq.query(target.project, sql)[0]
    expected = manifest.fingerprint
    source = _render(expected.count, expected.xor60, expected.sum32)
    loaded = _render(int(row["row_count"]), int(row["xor60"]), int(row["sum32"]))
    verdict = "match" if source == loaded else "mismatch"
    return Comparison(verdict, expected.count, int(row["row_count"]), source, loaded)
