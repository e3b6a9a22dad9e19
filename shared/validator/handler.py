"""The validator function's body: run the named checks and store every result.

Thresholds come from the `thresholds` argument or, once per call, from the `MATRIX_VALIDATION`
environment variable (see `shared.validator.thresholds`). Any failed check publishes one alert.
"""
from __future__ import annotations

import datetime as dt
import os

from cloudevents.http import CloudEvent

from shared import logs, results
from shared.alerts import raise_alert
from shared.events import EventError, event_id, meant_for_another
from shared.loaded_event import loaded_snapshot
from shared.manifest import Manifest, ManifestError
from shared.topology import VALIDATION_TABLE
from shared.validator.checks import CheckResult, run_checks
from shared.validator.thresholds import ENV_VARIABLE, Thresholds, ThresholdsError, thresholds_for

log = logs.get(__name__)


def result_rows(manifest: Manifest, checks: list[CheckResult], now: dt.datetime) -> list[dict[str, object]]:
    return [{"table_id": manifest.target.table_id, "run_id": manifest.run_id, "check_name": c.check_name,
             "passed": c.passed, "observed": c.observed[:1000], "expected": c.expected[:1000], "checked_at": now,
             "message": c.message[:1000], "severity": c.severity} for c in checks]


def _thresholds(table_id: str) -> Thresholds:
    """The table's thresholds; a broken document is logged and the defaults are used."""
    try:
        return thresholds_for(table_id, os.environ.get(ENV_VARIABLE))
    except ThresholdsError as error:
        log.error("using default validation thresholds: %s", error)
        return Thresholds()


def handle_table_loaded(event: CloudEvent, thresholds: Thresholds | None = None) -> list[CheckResult] | None:
    with logs.labels(event_id=event_id(event), stage="validator"):
        if meant_for_another(event, "validator"):
            log.info("ignored a dead letter sent again for another function")
            return None
        try:
            loaded = loaded_snapshot(event)
        except (EventError, ManifestError) as error:
            log.error("ignored table-loaded event: %s", error)
            return None
        manifest = loaded.manifest
        target = manifest.target
        with logs.labels(run_id=manifest.run_id, table=target.table_id):
            now = dt.datetime.now(dt.UTC)
            # the ledger is read in the profile query: a newer applied snapshot makes the one result `superseded`
            checks = run_checks(manifest, thresholds or _thresholds(target.table_id), now=now, only_if_latest=True)
            results.write(target.project, target.dataset, VALIDATION_TABLE, result_rows(manifest, checks, now))
            failed = [c for c in checks if not c.passed]
            logs.event(log, f"validation of {target.table_id} at {manifest.run_id}: "
                            f"{len(checks) - len(failed)}/{len(checks)} passed",
                       failed=[c.check_name for c in failed])
            if failed:
                raise_alert(target.pubsub_project, stage="validator", table=target.table_id, run_id=manifest.run_id,
                            reason=f"{len(failed)} check(s) failed: {', '.join(c.check_name for c in failed)}",
                            details={"failed": [{"check": c.check_name, "observed": c.observed,
                                                 "expected": c.expected} for c in failed]})
            return checks
