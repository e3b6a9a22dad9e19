"""The validator function's body: run the named checks and store every result."""
from __future__ import annotations

import datetime as dt

from cloudevents.http import CloudEvent

from shared import logs, results
from shared.alerts import raise_alert
from shared.events import EventError, event_id
from shared.loaded_event import loaded_snapshot
from shared.manifest import ManifestError
from shared.topology import VALIDATION_TABLE
from shared.validator.checks import CheckResult, run_checks

log = logs.get(__name__)


def handle_table_loaded(event: CloudEvent) -> list[CheckResult] | None:
    with logs.labels(event_id=event_id(event), stage="validator"):
        try:
            loaded = loaded_snapshot(event)
        except (EventError, ManifestError) as error:
            log.error("ignored table-loaded event: %s", error)
            return None
        manifest = loaded.manifest
        target = manifest.target
        with logs.labels(run_id=manifest.run_id, table=target.table_id):
            now = dt.datetime.now(dt.UTC)
            if not loaded.is_latest:
                checks = [CheckResult("superseded", True, "newer snapshot applied", "", "checks skipped")]
            else:
                checks = run_checks(manifest)
            results.write(target.project, target.dataset, VALIDATION_TABLE, [
                {"table_id": target.table_id, "run_id": manifest.run_id, "check_name": c.check_name,
                 "passed": c.passed, "observed": c.observed, "expected": c.expected, "checked_at": now,
                 "message": c.message} for c in checks
            ])
            failed = [c for c in checks if not c.passed]
            logs.event(log, f"validation of {target.table_id} at {manifest.run_id}: "
                            f"{len(checks) - len(failed)}/{len(checks)} passed",
                       failed=[c.check_name for c in failed])
            if failed:
                raise_alert(target.pubsub_project, stage="validator", table=target.table_id, run_id=manifest.run_id,
                            reason=f"{len(failed)} check(s) failed: {', '.join(c.check_name for c in failed)}")
            return checks
