"""The replication certificate: one row per reconciliation in `_sync_reconciliations`."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from shared import results


@dataclass
class Certificate:
    """What was compared, what differed by kind, what was repaired or requested, and the cost."""

    table_id: str
    run_id: str
    verdict: str = results.MISMATCH
    mode: str = "fingerprint"
    source_rows: int | None = None
    target_rows: int | None = None
    source_fingerprint: str | None = None
    target_fingerprint: str | None = None
    missing_rows: int = 0
    extra_rows: int = 0
    changed_rows: int = 0
    duplicate_rows: int = 0
    stale_hash_rows: int = 0
    rows_deleted: int = 0
    rows_restamped: int = 0
    keys_requested: int = 0
    full_snapshot_requested: bool = False
    bytes_processed: int = 0
    jobs: int = 0
    duration_s: float = 0.0
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    message: str = ""
    details: dict[str, object] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.verdict == results.MATCH

    @property
    def differences(self) -> int:
        return self.missing_rows + self.extra_rows + self.changed_rows + self.duplicate_rows

    def row(self) -> dict[str, object]:
        """The results-table row (details as JSON text)."""
        row = asdict(self)
        row["details"] = json.dumps(self.details, default=str, sort_keys=True)[:100_000] if self.details else None
        row["message"] = self.message[:1000] or None
        return row

    def summary(self) -> dict[str, object]:
        """Scalar fields for an alert body and log fields."""
        return {k: v for k, v in self.row().items() if k not in ("details", "checked_at")}
