"""Each table's last extraction outcome, `<prefix>/_extractions/<target table>.json`, beside its lock.

A table whose extraction fails writes no manifest, so nothing reaches the ledger: without this
record `status` would keep showing its last applied run as healthy while it silently stops
replicating (a table dropped or renamed in the source, a key column gone, a column type with no
BigQuery type). Writing it is best effort: a record that cannot be written is logged and never
fails the extraction it describes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from google.api_core import exceptions as gexc

from shared import gcs, logs

log = logs.get(__name__)
OUTCOME_FOLDER = "_extractions"
EXTRACTED, FAILED = "extracted", "failed"
_REASON_CHARS = 1000


@dataclass(frozen=True)
class ExtractionOutcome:
    outcome: str  # EXTRACTED or FAILED
    at: datetime
    run_id: str | None = None
    reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome == FAILED


def outcome_name(prefix: str, target_table: str) -> str:
    return f"{prefix}/{OUTCOME_FOLDER}/{target_table}.json"


def record(bucket: str, prefix: str, target_table: str, outcome: str, *, run_id: str | None = None,
           reason: str | None = None) -> None:
    """`reason` must already be free of secrets (the extractor's reasons are redacted)."""
    body = {"outcome": outcome, "at": datetime.now(UTC).isoformat(), "run_id": run_id,
            "reason": None if reason is None else reason[:_REASON_CHARS]}
    try:
        gcs.upload(bucket, outcome_name(prefix, target_table), json.dumps(body).encode(), "application/json")
    except Exception as error:  # noqa: BLE001 - the record is for people; the extraction's result stands
        log.warning("could not record the extraction outcome of %s: %s", target_table, error)


def read(bucket: str, prefix: str, target_table: str) -> ExtractionOutcome | None:
    """The table's last recorded outcome; None when none was recorded (or it cannot be read)."""
    try:
        raw = json.loads(gcs.read(bucket, outcome_name(prefix, target_table)))
        return ExtractionOutcome(str(raw["outcome"]), datetime.fromisoformat(raw["at"]), raw.get("run_id"),
                                 raw.get("reason"))
    except gexc.NotFound:
        return None
    except (ValueError, KeyError, TypeError) as error:
        log.warning("unreadable extraction outcome of %s: %s", target_table, error)
        return None
