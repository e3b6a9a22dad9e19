"""Alerts: a failure that needs a person is logged as an ERROR and published to the alerts topic."""
from __future__ import annotations

from shared import logs, pubsub
from shared.topology import ALERTS_TOPIC

log = logs.get(__name__)


def raise_alert(pubsub_project: str, *, stage: str, table: str, run_id: str | None, reason: str,
                details: dict[str, object] | None = None) -> None:
    body = {"stage": stage, "table": table, "run_id": run_id or "", "reason": reason, **(details or {})}
    logs.event(log, f"ALERT {stage} {table}: {reason}", level=40, **body)
    try:
        pubsub.publish_json(pubsub_project, ALERTS_TOPIC, body, ordering_key="")
    except Exception as error:  # an alert that cannot be published is still in the ERROR log above
        log.error("could not publish alert to %s/%s: %s", pubsub_project, ALERTS_TOPIC, error)
