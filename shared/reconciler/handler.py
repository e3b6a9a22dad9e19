"""The reconciler function's body: prove the table equals the snapshot it was loaded from."""
from __future__ import annotations

import datetime as dt

from cloudevents.http import CloudEvent

from shared import logs, results
from shared.alerts import raise_alert
from shared.events import EventError, event_id
from shared.loaded_event import loaded_snapshot
from shared.manifest import ManifestError
from shared.reconciler.fingerprint import compare_with_snapshot
from shared.topology import RECONCILIATION_TABLE

log = logs.get(__name__)


def handle_table_loaded(event: CloudEvent) -> str | None:
    with logs.labels(event_id=event_id(event), stage="reconciler"):
        try:
            loaded = loaded_snapshot(event)
        except (EventError, ManifestError) as error:
            log.error("ignored table-loaded event: %s", error)
            return None
        manifest = loaded.manifest
        target = manifest.target
        with logs.labels(run_id=manifest.run_id, table=target.table_id):
            row: dict[str, object] = {"table_id": target.table_id, "run_id": manifest.run_id,
                                      "checked_at": dt.datetime.now(dt.UTC)}
            if not loaded.is_latest:
                row |= {"verdict": "superseded", "message": "a newer snapshot was applied before this check ran"}
            else:
                comparison = compare_with_snapshot(manifest)
                row |= {"verdict": comparison.verdict, "source_rows": comparison.source_rows,
                        "target_rows": comparison.target_rows, "source_fingerprint": comparison.source_fingerprint,
                        "target_fingerprint": comparison.target_fingerprint}
            results.write(target.project, target.dataset, RECONCILIATION_TABLE, [row])
            logs.event(log, f"reconciliation of {target.table_id} at {manifest.run_id}: {row['verdict']}", **{
                k: v for k, v in row.items() if k not in ("checked_at",)})
            if row["verdict"] == "mismatch":
                raise_alert(target.pubsub_project, stage="reconciler", table=target.table_id,
                            run_id=manifest.run_id, reason="table differs from snapshot",
                            details={"source": row["source_fingerprint"], "target": row["target_fingerprint"]})
            return str(row["verdict"])
