"""An extract request (from Cloud Scheduler, or a repair request from the reconciler) names tables
of the config this extractor was deployed with (`MATRIX_CONFIG`); each is snapshotted to GCS.

Deployments sharing a Pub/Sub project share `extract-requests`, so a request also names the
deployment it is for (`deployment`: its snapshot root, gs://<bucket>/<prefix>); one naming another
deployment is not acted on. A request naming none (an older publisher's) is taken as before."""
from __future__ import annotations

import os

from cloudevents.http import CloudEvent

from shared import logs
from shared.alerts import raise_alert
from shared.config import Config, ConfigError, load_config
from shared.events import EventError, Message, event_id, pubsub_message
from shared.extractor.run import Extraction, extract
from shared.topology import DEPLOYMENT_FIELD, normalised_root, snapshot_root

log = logs.get(__name__)
CONFIG_VARIABLE = "MATRIX_CONFIG"


def requested_tables(config: Config, message: Message) -> list[str]:
    """`{"tables": [...]}` (Cloud Scheduler), `{"table": ...}` (a repair request), `{"group": ...}`
    for a group's tables, or `{}` for all. A table is named by its source name or its target table.
    Names not in this extractor's config (a schedule updated before the config) are logged and left
    out; a request left with none is an EventError."""
    data = message.data
    group = data.get("group") if isinstance(data.get("group"), str) else None
    everything = [t.name for t in config.tables if group is None or t.group == group]
    names = data.get("tables") or ([data["table"]] if data.get("table") else everything)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise EventError(f"extract request names no tables: {data!r}"[:300])
    known, unknown = [], []
    for name in names:
        try:
            known.append(config.table(name).name)
        except ConfigError:
            unknown.append(name)
    if unknown:
        log.error("extract request names table(s) not in this extractor's config, left out: %s (its tables: %s)",
                  ", ".join(unknown), ", ".join(t.name for t in config.tables))
    if not known:
        raise EventError(f"extract request names no table of this extractor's config: {', '.join(unknown)}"[:300])
    return list(dict.fromkeys(known))


def deployment_root(config: Config) -> str:
    return snapshot_root(config.gcs.bucket, config.gcs.prefix)


def requested_root(message: Message) -> str | None:
    """The deployment the request names (its body, else its attribute), or None if it names none."""
    named = message.data.get(DEPLOYMENT_FIELD) or message.attributes.get(DEPLOYMENT_FIELD)
    return normalised_root(str(named)) if named else None


def foreign_root(config: Config, message: Message) -> str | None:
    """The root of the other deployment the request is for; None when it is for this config's or
    names no deployment."""
    named = requested_root(message)
    return named if named is not None and named != deployment_root(config) else None


def run_request(config: Config, message: Message) -> Extraction:
    """A repair request (keys found wrong in BigQuery, or "full": true) gets a full snapshot: a
    delta compares the source with the last snapshot, not with BigQuery, so it would not re-ship
    a row that was changed behind the pipeline's back. The full MERGE rewrites only differing rows.
    A table another extraction holds is skipped (Extraction.locked); the message is still acknowledged,
    since that extraction is writing the table's snapshot. A table whose definition cannot be
    snapshotted (Extraction.failed) raises an alert and is acknowledged too: delivering the request
    again would fail the same way until someone changes the source or the config. A table that
    failed otherwise (Extraction.unexpected) is for the caller to have delivered again."""
    tables = requested_tables(config, message)
    repair = bool(message.data.get("keys") or message.data.get("full"))
    if repair:
        log.info("repair request for %s (%d key(s)): full snapshot", tables, len(message.data.get("keys") or []))
    outcome = extract(config, tables, force_full=repair)
    for failed in outcome.failed:
        if failed.unexpected:
            continue
        raise_alert(config.pubsub.project, stage="extractor", table=failed.table, run_id=None, reason=failed.reason)
    logs.event(log, f"extract request done: {len(outcome.written)} snapshot(s) written, "
                    f"{len(outcome.locked)} table(s) skipped as locked, {len(outcome.failed)} failed",
               written=[r.table for r in outcome.written], locked=[t.table for t in outcome.locked],
               failed=[t.table for t in outcome.failed])
    return outcome


def handle_extract_request(event: CloudEvent) -> Extraction:
    with logs.labels(event_id=event_id(event), stage="extractor"):
        config_path = os.environ.get(CONFIG_VARIABLE)
        if not config_path:
            raise ConfigError(f"{CONFIG_VARIABLE} is not set: the extractor needs its config file")
        config = load_config(config_path)
        try:
            message = pubsub_message(event)
            foreign = foreign_root(config, message)
            if foreign is not None:  # acknowledged: a push subscription would only deliver it here again
                log.warning("ignored extract request %s: it is for deployment %s, this extractor's is %s",
                            message.message_id, foreign, deployment_root(config))
                return Extraction()
            outcome = run_request(config, message)
        except (EventError, ConfigError) as error:
            log.error("ignored extract request: %s", error)
            return Extraction()
        if outcome.unexpected:  # the other tables are written; Pub/Sub delivers the request again
            raise ExtractionIncomplete("; ".join(failed.describe() for failed in outcome.unexpected))
        return outcome


class ExtractionIncomplete(RuntimeError):
    """Tables of a request failed unexpectedly: raised so that Pub/Sub delivers it again."""
