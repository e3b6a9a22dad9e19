"""What `compare-keys` finds for one table: the kinds of difference and the typed result."""
from __future__ import annotations

from dataclasses import dataclass, field

from matrix_sync.compare_store import CHANGED, DUPLICATE, EXTRA, MISSING, STALE_HASH, Differences, KeyDifference
from shared import bq_jobs

__all__ = ["CHANGED", "DUPLICATE", "EXTRA", "MISSING", "STALE_HASH", "CompareError", "Differences", "KeyDifference",
           "TableComparison"]


class CompareError(RuntimeError):
    """A table that cannot be compared (not loaded yet, columns missing in BigQuery)."""


@dataclass
class TableComparison:
    table: str
    target: str
    key_columns: list[str]
    key_bq_names: list[str]
    string_keys: list[bool]
    deep: bool = True
    stored_only: bool = False  # compared with the stored hash columns only (compare-keys --stored-hashes)
    source_rows: int = 0
    target_rows: int = 0
    unconvertible_rows: int = 0
    differences: Differences = field(default_factory=Differences)
    levels: int = 0
    segments_compared: int = 0
    source_seconds: float = 0.0
    bigquery_seconds: float = 0.0  # the hash table and its first segment level, run while the source streams
    seconds: float = 0.0
    stats: bq_jobs.JobStats = field(default_factory=bq_jobs.JobStats)
    hash_table: str | None = None
    note: str = ""  # what the operator should know beside the counts
    keyless: bool = False

    @property
    def clean(self) -> bool:
        return not self.differences

    def count(self, kind: str) -> int:
        return self.differences.count(kind)

    def close(self) -> None:
        """Removes the file the differences are kept in."""
        self.differences.close()
