"""The on-prem extractor agent: pulls extract requests (Cloud Scheduler's, the reconciler's repair
requests) from its subscription and snapshots the tables they name. It needs no inbound network
access, only outbound HTTPS to Pub/Sub and GCS.

Deployments sharing a Pub/Sub project share the one `extractor-pull` subscription: a request naming
another deployment (its `deployment` root) is handed back untouched for that deployment's agent."""
from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry

from shared import logs
from shared.clients import publisher, subscriber
from shared.config import Config
from shared.events import EventError, Message, parsed_message
from shared.extractor.handler import deployment_root, foreign_root, run_request
from shared.extractor.run import Extraction
from shared.extractor.source import SourceError
from shared.pubsub import publish_json
from shared.topology import DEPLOYMENT_FIELD, EXTRACT_REQUESTS_TOPIC, EXTRACTOR_PULL_SUBSCRIPTION

log = logs.get(__name__)
# What a network or Pub/Sub outage looks like once a call's own retries (PULL_RETRY_S) gave up: the
# agent waits it out instead of exiting, as an on-prem daemon must.
TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.Unknown,
             gexc.Aborted, gexc.TooManyRequests, gexc.RetryError)
PULL_TIMEOUT_S = 10.0
PULL_RETRY_S = 60.0
# A request is held while its tables are extracted, which can take longer than the subscription's ack
# deadline (600 s at most): its deadline is extended every ACK_RENEW_EVERY_S by ACK_EXTENSION_S, so
# Pub/Sub does not deliver it again (to this agent or another) while it is still being worked on.
ACK_EXTENSION_S = 600
ACK_RENEW_EVERY_S = 60
OUTAGE_WAIT_S = (5.0, 60.0)  # first and longest wait between pulls while Pub/Sub cannot be reached
# A request whose source could not be reached (a SQL Server restarting) is handed back to Pub/Sub,
# to be delivered again this long after, instead of at once in a tight loop.
SOURCE_RETRY_S = 30
# Another deployment's request comes straight back when its own agent is not pulling: the second
# time one is seen, the agent waits this long before pulling again, not to spin on it.
FOREIGN_AGAIN_WAIT_S = 2.0
_FOREIGN_REMEMBERED = 10_000  # message ids of foreign requests already logged


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
    """What Cloud Scheduler publishes: an extract request for some or all tables of this deployment."""
    body: dict[str, object] = {DEPLOYMENT_FIELD: deployment_root(config)}
    if tables:
        body["tables"] = tables
    return publish_json(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, body)


def serve(config: Config, *, once: bool, idle_timeout_s: float | None,
          on_results: Callable[[Extraction], None]) -> int:
    """Handles requests one at a time; acknowledges each only after its snapshots are written, or
    after its tables were found locked by another extraction (which is writing them). A request a
    table of which failed unexpectedly is not acknowledged, so that it is delivered again. Pub/Sub
    being unreachable is waited out (with `once`, it is an error), and so is the source: a request it
    could not be reached for is delivered again (with `once`, the SourceError is raised once it is
    handed back); a subscription that disappeared (an emulator restarted) is created again, once
    per disappearance. A request for another deployment is handed back and not counted; with `once`,
    the agent returns once such a request comes back to it (or nothing is left)."""
    path = ensure_subscription(config)
    handled = 0
    idle_since = time.monotonic()
    outage = _Outage()
    recreated = False
    foreign_seen: set[str] = set()
    while True:
        try:
            received = _pull(path)
        except TRANSIENT as error:
            if once or _idle_too_long(idle_since, idle_timeout_s):
                raise
            outage.wait(error)
            continue
        except gexc.NotFound:
            if recreated:
                raise
            log.warning("subscription %s is gone; creating it again", path)
            ensure_subscription(config)
            recreated = True
            continue
        outage.over()
        recreated = False
        passed = _Passed.NO if received is None else _pass_on_foreign(config, path, received, foreign_seen)
        if received is None or passed is _Passed.AGAIN:
            if once or _idle_too_long(idle_since, idle_timeout_s):
                return handled
            if passed is _Passed.AGAIN:  # its own agent is not pulling now: do not spin on it
                time.sleep(FOREIGN_AGAIN_WAIT_S)
            continue
        if passed is _Passed.FIRST:
            if _idle_too_long(idle_since, idle_timeout_s):
                return handled
            continue
        unreachable = _handle(config, path, received, on_results)
        handled += 1
        idle_since = time.monotonic()
        if once and unreachable is not None:
            raise unreachable
        if once:
            return handled


def _pull(path: str) -> object | None:
    """One request, or None when there is none. Pub/Sub answers a pull that found nothing before its
    timeout with DEADLINE_EXCEEDED (the emulator with an empty response): both mean idle."""
    retry = gretry.Retry(predicate=gretry.if_exception_type(gexc.Aborted, gexc.InternalServerError,
                                                            gexc.ServiceUnavailable, gexc.Unknown),
                         initial=0.1, maximum=PULL_RETRY_S / 6, multiplier=1.3, timeout=PULL_RETRY_S)
    try:
        response = subscriber().pull(subscription=path, max_messages=1, timeout=PULL_TIMEOUT_S, retry=retry)
    except gexc.DeadlineExceeded:
        return None
    return response.received_messages[0] if response.received_messages else None


def _request_message(received: object) -> Message:
    """The request as the handler reads it; a body that is not JSON still has its attributes."""
    pubsub_message = received.message  # type: ignore[attr-defined]
    message_id = str(pubsub_message.message_id)
    try:
        return parsed_message(pubsub_message.data, pubsub_message.attributes, message_id)
    except EventError:  # dropped by _handle with its reason, unless it is another deployment's
        return Message({}, dict(pubsub_message.attributes), message_id)


class _Passed(Enum):
    NO = "this deployment's request, or one naming none"
    FIRST = "another deployment's request, seen for the first time"
    AGAIN = "another deployment's request, handed back before"


def _idle_too_long(idle_since: float, idle_timeout_s: float | None) -> bool:
    return idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s


def _pass_on_foreign(config: Config, path: str, received: object, seen: set[str]) -> _Passed:
    """Hands back a request naming another deployment at once (ack deadline 0), so that deployment's
    agent, pulling the same subscription, can take it; logs it once per message."""
    message = _request_message(received)
    foreign = foreign_root(config, message)
    if foreign is None:
        return _Passed.NO
    again = message.message_id in seen
    with logs.labels(event_id=message.message_id, stage="agent"):
        if not again:
            if len(seen) >= _FOREIGN_REMEMBERED:
                seen.clear()
            seen.add(message.message_id)
            log.info("extract request %s is for deployment %s, not this agent's %s: handed back for its own agent",
                     message.message_id, foreign, deployment_root(config))
        try:
            subscriber().modify_ack_deadline(subscription=path, ack_ids=[received.ack_id],  # type: ignore[attr-defined]
                                             ack_deadline_seconds=0)
        except gexc.GoogleAPICallError as failed:
            log.warning("extract request %s for deployment %s could not be handed back (%s): it is delivered "
                        "again once its ack deadline passes", message.message_id, foreign, failed)
    return _Passed.AGAIN if again else _Passed.FIRST


def _handle(config: Config, path: str, received: object,
            on_results: Callable[[Extraction], None]) -> SourceError | None:
    """A request that is not one (not a JSON object, naming no table of the config) is dropped: it
    would fail the same way on every delivery. One whose source cannot be reached, at connect time or
    once extracting (SourceLost), is handed back to Pub/Sub for another delivery, and its error returned."""
    pubsub_message = received.message  # type: ignore[attr-defined]
    ack_id: str = received.ack_id  # type: ignore[attr-defined]
    message_id = str(pubsub_message.message_id)
    acknowledged, unreachable = True, None
    with logs.labels(event_id=message_id, stage="agent"):
        with _held(path, ack_id):
            try:
                outcome = run_request(config, parsed_message(pubsub_message.data, pubsub_message.attributes,
                                                             message_id))
            except EventError as error:
                log.error("dropped extract request %s: %s", message_id, error)
            except SourceError as error:
                unreachable = error
            else:
                on_results(outcome)
                acknowledged = not outcome.unexpected
        if unreachable is not None:  # after _held, so no renewal extends the deadline again
            _hand_back(path, ack_id, message_id, unreachable)
            return unreachable
        if not acknowledged:  # Pub/Sub delivers it again once its ack deadline passes
            log.error("extract request %s left for another delivery: %d table(s) failed unexpectedly",
                      message_id, len(outcome.unexpected))
            return None
        try:
            subscriber().acknowledge(subscription=path, ack_ids=[ack_id])
        except TRANSIENT as error:
            log.warning("extract request %s could not be acknowledged (%s): it will be delivered again and its "
                        "tables extracted again", message_id, error)
    return None


def _hand_back(path: str, ack_id: str, message_id: str, error: SourceError) -> None:
    """Not acknowledged: delivered again once SOURCE_RETRY_S have passed (or, if Pub/Sub cannot be
    told now, once the ack deadline has)."""
    log.error("extract request %s left for another delivery in %d s: %s", message_id, SOURCE_RETRY_S, error)
    try:
        subscriber().modify_ack_deadline(subscription=path, ack_ids=[ack_id], ack_deadline_seconds=SOURCE_RETRY_S)
    except gexc.GoogleAPICallError as failed:
        log.warning("extract request %s could not be handed back (%s): it is delivered again once its ack "
                    "deadline passes", message_id, failed)


@contextmanager
def _held(path: str, ack_id: str) -> Iterator[None]:
    """Extends the request's ack deadline now and every ACK_RENEW_EVERY_S until the block ends."""
    done = threading.Event()

    def extend() -> None:
        while True:
            try:
                subscriber().modify_ack_deadline(subscription=path, ack_ids=[ack_id],
                                                 ack_deadline_seconds=ACK_EXTENSION_S)
            except gexc.GoogleAPICallError as error:
                log.warning("could not extend the ack deadline of an extract request: %s", error)
            if done.wait(ACK_RENEW_EVERY_S):
                return

    # in a copy of this context, so its warnings carry the request's labels (event_id)
    renewer = threading.Thread(target=contextvars.copy_context().run, args=(extend,), name="ack-deadline", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        renewer.join()


class _Outage:
    """Waits between failed pulls, doubling up to OUTAGE_WAIT_S[1]; logs when it starts and ends."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._wait = OUTAGE_WAIT_S[0]

    def wait(self, error: Exception) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning("Pub/Sub cannot be reached (%s); the agent keeps trying", error)
        time.sleep(self._wait)
        self._wait = min(self._wait * 2, OUTAGE_WAIT_S[1])

    def over(self) -> None:
        if self._since is not None:
            log.warning("Pub/Sub reached again after %.0f s", time.monotonic() - self._since)
        self._since, self._wait = None, OUTAGE_WAIT_S[0]
