"""A refused snapshot: one `refused` ledger row with the reason (when the manifest names a target
well enough), one alert, and the event acknowledged. The target table is never touched."""
from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
from dataclasses import dataclass

from pydantic import ValidationError

from shared import bigquery as bq
from shared import gcs, ledger, logs
from shared.alerts import raise_alert
from shared.loader import locks
from shared.loader.conflicts import retry_on_conflict
from shared.manifest import Manifest, Target

log = logs.get(__name__)


@dataclass(frozen=True)
class Refusal:
    manifest_uri: str
    reason: str
    run_id: str
    target: Target | None = None
    source_table: str | None = None
    sequence: int | None = None
    mode: str | None = None
    source_rows: int | None = None
    extracted_at: dt.datetime | None = None


def of_manifest(manifest: Manifest, manifest_uri: str, reason: str) -> Refusal:
    return Refusal(manifest_uri, reason, manifest.run_id, manifest.target, manifest.source_table, manifest.sequence,
                   manifest.mode, manifest.row_count, manifest.extracted_at)


def of_text(text: bytes, manifest_uri: str, reason: str) -> Refusal:
    """Whatever a manifest that failed to parse still says about itself, checked field by field."""
    folder = posixpath.basename(posixpath.dirname(gcs.split_uri(manifest_uri)[1]))
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict):
        return Refusal(manifest_uri, reason, folder)
    try:
        target = Target.model_validate(raw.get("target"))
    except (ValidationError, ValueError):
        target = None

    def typed(name: str, kind: type) -> object:
        value = raw.get(name)
        return value if isinstance(value, kind) and not isinstance(value, bool) else None

    run_id = typed("run_id", str) or folder
    return Refusal(manifest_uri, reason, str(run_id), target, typed("source_table", str), typed("sequence", int),
                   typed("mode", str), typed("row_count", int), _timestamp(raw.get("extracted_at")))


def _timestamp(value: object) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def refuse(refusal: Refusal) -> None:
    """Records and alerts once per snapshot and reason, however often the event is delivered."""
    target = refusal.target
    with logs.labels(run_id=refusal.run_id, table=target.table_id if target else None):
        _refuse(refusal, target)


def _refuse(refusal: Refusal, target: Target | None) -> None:
    first = True
    if target is not None:
        try:
            first = _record(refusal, target)
        except Exception:  # the target may name a project this function cannot write to: alert anyway
            log.exception("could not record the refusal of %s", refusal.manifest_uri)
    log.error("refused %s: %s", refusal.manifest_uri, refusal.reason)
    if not first:
        return
    project = target.pubsub_project if target else os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        return
    raise_alert(project, stage="loader", table=target.table_id if target else "", run_id=refusal.run_id,
                reason=refusal.reason, details={"manifest_uri": refusal.manifest_uri})


def _record(refusal: Refusal, target: Target) -> bool:
    bq.ensure_dataset(target.project, target.dataset)
    row: dict[str, object] = {
        "table_id": target.table_id, "source_table": refusal.source_table, "run_id": refusal.run_id,
        "sequence": refusal.sequence, "mode": refusal.mode, "status": ledger.REFUSED,
        "manifest_uri": refusal.manifest_uri, "source_rows": refusal.source_rows,
        "extracted_at": refusal.extracted_at, "recorded_at": dt.datetime.now(dt.UTC),
        "message": refusal.reason[:1000],
    }
    with locks.ledger(target.project, target.dataset):
        return retry_on_conflict(lambda: ledger.record_once(target.project, target.dataset, row,
                                                                      same_message=True))
