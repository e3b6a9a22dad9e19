"""Creates, idempotently, the buckets, datasets, topics and subscriptions Terraform creates in the cloud.

Clients are built against explicit emulator endpoints, so the caller's os.environ is never touched."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage
from google.protobuf.duration_pb2 import Duration
from google.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

from shared.loader.staging import STAGING_TTL
from shared.topology import (
    ALERTS_TOPIC,
    DEAD_LETTER_SUBSCRIPTION_SUFFIX,
    EXTRACT_REQUESTS_TOPIC,
    EXTRACTOR_PULL_SUBSCRIPTION,
    FUNCTIONS,
    GCS_NOTIFICATIONS_TOPIC,
    RECONCILE_REQUESTS_TOPIC,
    REQUEST_SUBSCRIPTIONS,
    STAGING_DATASET_SUFFIX,
    TABLE_LOADED_TOPIC,
    dead_letter_topic,
    subscription_name,
)

ACK_DEADLINE_SECONDS = 600
MAX_DELIVERY_ATTEMPTS = 5
MIN_BACKOFF_SECONDS = 1
MAX_BACKOFF_SECONDS = 10
ALERTS_SUBSCRIPTION = "alerts-sub"
# A freshly started emulator can refuse the first calls for a moment.
_RETRY = Retry(
    predicate=if_exception_type(exceptions.ServiceUnavailable, exceptions.DeadlineExceeded),
    initial=0.1, maximum=1.0, timeout=30.0,
)


@dataclass(frozen=True)
class Endpoints:
    pubsub: str            # host:port (gRPC, plaintext)
    storage: str           # http://host:port
    bigquery: str          # http://host:port
    functions: dict[str, str]  # function name -> push endpoint URL


@dataclass(frozen=True)
class PubSubAdmin:
    publisher: PublisherClient
    subscriber: SubscriberClient


@contextmanager
def pubsub_admin(host: str) -> Iterator[PubSubAdmin]:
    publisher = PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)))
    subscriber = SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))
    try:
        yield PubSubAdmin(publisher, subscriber)
    finally:
        publisher.transport.close()
        subscriber.transport.close()


def ensure_notifications_topic(endpoints: Endpoints, project: str) -> None:
    """The topic fake-gcs-server publishes finalize events to; must exist before it starts."""
    with pubsub_admin(endpoints.pubsub) as admin:
        ensure_topic(admin, project, GCS_NOTIFICATIONS_TOPIC)


def ensure_loader_wiring(endpoints: Endpoints, project: str) -> None:
    """GCS notifications -> loader push subscription, with its dead-letter topic."""
    with pubsub_admin(endpoints.pubsub) as admin:
        ensure_topic(admin, project, GCS_NOTIFICATIONS_TOPIC)
        ensure_push_subscription(admin, project, "loader", endpoints.functions["loader"])


def ensure_resources(endpoints: Endpoints, *, bucket: str, bigquery_project: str, dataset: str, pubsub_project: str) -> None:
    """Bucket, datasets (target and staging), topics and the subscriptions of the table-loaded consumers."""
    ensure_bucket(endpoints.storage, bucket, project=bigquery_project)
    ensure_datasets(endpoints.bigquery, bigquery_project, [dataset])
    # as infra/bigquery.tf makes it: staging tables expire on their own if a crash leaves them behind
    ensure_datasets(endpoints.bigquery, bigquery_project, [dataset + STAGING_DATASET_SUFFIX], STAGING_TTL)
    with pubsub_admin(endpoints.pubsub) as admin:
        for topic in (TABLE_LOADED_TOPIC, ALERTS_TOPIC, EXTRACT_REQUESTS_TOPIC, RECONCILE_REQUESTS_TOPIC):
            ensure_topic(admin, pubsub_project, topic)
        for function, (_entry_point, trigger) in FUNCTIONS.items():
            if trigger == TABLE_LOADED_TOPIC and function in endpoints.functions:
                ensure_push_subscription(admin, pubsub_project, function, endpoints.functions[function])
        for subscription, (function, topic) in REQUEST_SUBSCRIPTIONS.items():
            if function in endpoints.functions:
                ensure_push_subscription(admin, pubsub_project, function, endpoints.functions[function],
                                         subscription=subscription, topic=topic)
        ensure_pull_subscription(admin, pubsub_project, ALERTS_SUBSCRIPTION, ALERTS_TOPIC)
        # the on-prem agent's, as Terraform makes it: extract requests published before any agent
        # ran (the reconciler's repairs, say) wait there instead of being dropped by a topic
        # without subscribers
        ensure_pull_subscription(admin, pubsub_project, EXTRACTOR_PULL_SUBSCRIPTION, EXTRACT_REQUESTS_TOPIC,
                                 ack_deadline_s=ACK_DEADLINE_SECONDS)


def ensure_topic(admin: PubSubAdmin, project: str, topic: str) -> None:
    try:
        admin.publisher.create_topic(name=PublisherClient.topic_path(project, topic), retry=_RETRY)
    except exceptions.AlreadyExists:
        pass


def ensure_pull_subscription(admin: PubSubAdmin, project: str, name: str, topic: str, *,
                             ack_deadline_s: int | None = None) -> None:
    request: dict[str, object] = {"name": SubscriberClient.subscription_path(project, name),
                                  "topic": PublisherClient.topic_path(project, topic)}
    if ack_deadline_s is not None:
        request["ack_deadline_seconds"] = ack_deadline_s
    try:
        admin.subscriber.create_subscription(request=request, retry=_RETRY)
    except exceptions.AlreadyExists:
        pass


def ensure_push_subscription(admin: PubSubAdmin, project: str, function: str, endpoint: str, *,
                             subscription: str | None = None, topic: str | None = None) -> None:
    """`subscription` (default `subscription_name(function)`) of `topic` (default the function's
    trigger) pushing to `endpoint`, dead-lettering to `dead_letter_topic(function)`, whose own pull
    subscription keeps what lands there for inspection."""
    trigger = topic or FUNCTIONS[function][1]
    dead_letters = dead_letter_topic(function)
    ensure_topic(admin, project, dead_letters)
    ensure_pull_subscription(admin, project, dead_letters + DEAD_LETTER_SUBSCRIPTION_SUFFIX, dead_letters)
    name = SubscriberClient.subscription_path(project, subscription or subscription_name(function))
    try:
        admin.subscriber.create_subscription(
            request={
                "name": name,
                "topic": PublisherClient.topic_path(project, trigger),
                "push_config": {"push_endpoint": endpoint},
                "ack_deadline_seconds": ACK_DEADLINE_SECONDS,
                "dead_letter_policy": {
                    "dead_letter_topic": PublisherClient.topic_path(project, dead_letters),
                    "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
                },
                "retry_policy": {
                    "minimum_backoff": Duration(seconds=MIN_BACKOFF_SECONDS),
                    "maximum_backoff": Duration(seconds=MAX_BACKOFF_SECONDS),
                },
            },
            retry=_RETRY,
        )
    except exceptions.AlreadyExists:
        # the function server may have moved to another port since the subscription was made
        existing = admin.subscriber.get_subscription(subscription=name, retry=_RETRY)
        if existing.push_config.push_endpoint != endpoint:
            admin.subscriber.modify_push_config(
                request={"subscription": name, "push_config": {"push_endpoint": endpoint}}, retry=_RETRY
            )


def ensure_bucket(endpoint: str, bucket: str, *, project: str) -> None:
    client = storage.Client(project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    try:
        if client.lookup_bucket(bucket) is None:
            client.create_bucket(bucket)
    except exceptions.Conflict:
        pass
    finally:
        client.close()


def ensure_datasets(endpoint: str, project: str, datasets: list[str],
                    default_table_expiration: dt.timedelta | None = None) -> None:
    client = bigquery.Client(project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))
    try:
        for dataset in datasets:
            created = client.create_dataset(f"{project}.{dataset}", exists_ok=True)
            expiration_ms = int(default_table_expiration.total_seconds() * 1000) if default_table_expiration else None
            if created.default_table_expiration_ms != expiration_ms:  # bqemulator drops it on create
                created.default_table_expiration_ms = expiration_ms
                client.update_dataset(created, ["default_table_expiration_ms"])
    finally:
        client.close()
