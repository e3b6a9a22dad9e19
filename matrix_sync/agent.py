"""The on-prem extractor agent: pulls extract requests (Cloud Scheduler's, the reconciler's repair
requests) from its subscription and snapshots the tables they name. It needs no inbound network
access, only outbound HTTPS to Pub/Sub and GCS."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from google.api_core import exceptions as gexc

from shared import logs
from shared.clients import publisher, subscriber
from shared.config import Config
from shared.events import EventError, Message
from shared.extractor.handler import run_request
from shared.extractor.run import Extraction
from shared.pubsub import publish_json
from shared.topology import EXTRACT_REQUESTS_TOPIC, EXTRACTOR_PULL_SUBSCRIPTION

log = logs.get(__name__)


def ensure_subscription(config: Config) -> str:
    project = config.pubsub.project
    topic = publisher().topic_path(project, EXTRACT_REQUESTS_TOPIC)
    path = subscriber().subscription_path(project, EXTRACTOR_PULL_SUBSCRIPTION)
    # In the cloud Terraform creates both and the agent may only subscribe: creating is best effort.
    try:
        publisher().create_topic(name=topic)
    except (gexc.AlreadyExists, gexc.PermissionDenied):
        pass
    try:
        subscriber().create_subscription(name=path, topic=topic, ack_deadline_seconds=600)
    except (gexc.AlreadyExists, gexc.PermissionDenied):
        pass
    return path


def request_extract(config: Config, tables: list[str]) -> str:
    """What Cloud Scheduler publishes: an extract request for some or all tables."""
    return publish_json(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, {"tables": tables} if tables else {})


def serve(config: Config, *, once: bool, idle_timeout_s: float | None,
          on_results: Callable[[Extraction], None]) -> int:
    """Handles requests one at a time; acknowledges each only after its snapshots are written, or
    after its tables were found locked by another extraction (which is writing them). A request a
    table of which failed unexpectedly is not acknowledged, so that it is delivered again."""
    path = ensure_subscription(config)
    handled = 0
    idle_since = time.monotonic()
    while True:
        response = subscriber().pull(subscription=path, max_messages=1, timeout=10)
        if not response.received_messages:
            if once or (idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s):
                return handled
            continue
        received = response.received_messages[0]
        message = _message(received.message)
        acknowledged = True
        with logs.labels(event_id=message.message_id, stage="agent"):
            try:
                outcome = run_request(config, message)
            except EventError as error:
                log.error("dropped extract request %s: %s", message.message_id, error)
            else:
                on_results(outcome)
                acknowledged = not outcome.unexpected
            if acknowledged:
                subscriber().acknowledge(subscription=path, ack_ids=[received.ack_id])
            else:  # Pub/Sub delivers it again once its ack deadline passes
                log.error("extract request %s left for another delivery: %d table(s) failed unexpectedly",
                          message.message_id, len(outcome.unexpected))
        handled += 1
        idle_since = time.monotonic()
        if once:
            return handled


def _message(pubsub_message: object) -> Message:
    raw = getattr(pubsub_message, "data", b"") or b"{}"
    try:
        data = json.loads(raw)
    except ValueError:
        data = {"invalid": raw[:200].decode(errors="replace")}
    return Message(data if isinstance(data, dict) else {}, dict(getattr(pubsub_message, "attributes", {})),
                   str(getattr(pubsub_message, "message_id", "")))
