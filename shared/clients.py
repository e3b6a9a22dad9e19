"""Google Cloud clients that reach the real services, or the local emulators when the usual
emulator variables are set (STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST)."""
from __future__ import annotations

import os
from functools import cache

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, pubsub_v1, storage

BIGQUERY_EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"


def emulated() -> bool:
    return bool(os.environ.get(BIGQUERY_EMULATOR_HOST) or os.environ.get("STORAGE_EMULATOR_HOST"))


@cache
def bigquery_client(project: str) -> bigquery.Client:
    endpoint = os.environ.get(BIGQUERY_EMULATOR_HOST)
    if endpoint:
        if not endpoint.startswith("http"):
            endpoint = f"http://{endpoint}"
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
    return bigquery.Client(project=project)


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
