"""Google Cloud clients that reach the real services, or the local emulators when the usual
emulator variables are set (STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST)."""
from __future__ import annotations

import os
from functools import cache

import google.auth
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery, pubsub_v1, storage

BIGQUERY_EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"
REQUEST_TIMEOUT_ENV = "MATRIX_BIGQUERY_REQUEST_TIMEOUT_S"
DEFAULT_REQUEST_TIMEOUT_S = 120.0


class _BoundedSession(AuthorizedSession):
    """google-cloud-bigquery sends its API requests with no timeout, so a BigQuery that stops
    answering would hold a function until Pub/Sub's ack deadline. Every request gets a read timeout
    instead; the client's retry treats a timeout as retryable, so a short stall is retried and a long
    one fails the attempt, and Pub/Sub redelivers (the ledger makes the redelivery safe)."""

    def __init__(self, credentials: Credentials, timeout_s: float) -> None:
        super().__init__(credentials)
        self._timeout_s = timeout_s

    def request(self, method: str, url: str, data: object = None, headers: object = None,  # type: ignore[override]
                max_allowed_time: float | None = None, timeout: object = None, **kwargs: object) -> object:
        return super().request(method, url, data=data, headers=headers, max_allowed_time=max_allowed_time,
                               timeout=self._timeout_s if timeout is None else timeout, **kwargs)


def request_timeout_s() -> float:
    raw = os.environ.get(REQUEST_TIMEOUT_ENV, "").strip()
    return float(raw) if raw else DEFAULT_REQUEST_TIMEOUT_S


def emulated() -> bool:
    return bool(os.environ.get(BIGQUERY_EMULATOR_HOST) or os.environ.get("STORAGE_EMULATOR_HOST"))


@cache
def bigquery_client(project: str) -> bigquery.Client:
    endpoint = os.environ.get(BIGQUERY_EMULATOR_HOST)
    if endpoint:
        if not endpoint.startswith("http"):
            endpoint = f"http://{endpoint}"
        anonymous = AnonymousCredentials()
        return bigquery.Client(
            project=project,
            credentials=anonymous,
            client_options=ClientOptions(api_endpoint=endpoint),
            _http=_BoundedSession(anonymous, request_timeout_s()),
        )
    credentials, _ = google.auth.default(scopes=bigquery.Client.SCOPE)
    return bigquery.Client(project=project, credentials=credentials,
                           _http=_BoundedSession(credentials, request_timeout_s()))


@cache
def storage_client(project: str | None = None) -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "local", credentials=AnonymousCredentials())
    return storage.Client(project=project)


@cache
def publisher() -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )


@cache
def subscriber() -> pubsub_v1.SubscriberClient:
    return pubsub_v1.SubscriberClient()


def reset_clients() -> None:
    """Forget cached clients, e.g. after the emulator variables changed."""
    for factory in (bigquery_client, storage_client, publisher, subscriber):
        factory.cache_clear()
