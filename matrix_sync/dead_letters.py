"""Messages Pub/Sub gave up on: listed for people, and sent again once their cause is fixed.

Each function's push subscription dead-letters a message after its last delivery attempt; the
message waits in `<function>-dead-letter-sub`. Listing leaves it there; replaying publishes it again
to the topic it first came from (the loader's ledger makes a repeated snapshot a no-op) and only
then acknowledges it; discarding acknowledges it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.api_core import exceptions as gexc

from shared.clients import publisher, subscriber
from shared.events import REPLAY_FOR_ATTRIBUTE
from shared.topology import (
    DEPLOYMENT_FIELD,
    FUNCTIONS,
    MANIFEST_NAME,
    REQUEST_SUBSCRIPTIONS,
    TABLE_LOADED_TOPIC,
    dead_letter_subscription,
    same_root,
    subscription_name,
    under_root,
)

# What Pub/Sub adds to a message it dead-letters; dropped when the message is sent again.
SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"
SOURCE_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_PUBLISH_TIME = "CloudPubSubDeadLetterSourceTopicPublishTime"
_DEAD_LETTER_PREFIX = "CloudPubSubDeadLetter"
_PULL_BATCH = 100
_PULL_TIMEOUT_S = 10.0


class DeadLetterError(Exception):
    """A dead letter that cannot be sent again, or a subscription that cannot be read."""


@dataclass(frozen=True)
class DeadLetter:
    project: str
    function: str
    message_id: str
    ack_id: str
    data: bytes
    attributes: dict[str, str]
    dead_lettered_at: dt.datetime

    @property
    def source_subscription(self) -> str:
        return self.attributes.get(SOURCE_SUBSCRIPTION, "")

    @property
    def delivery_attempts(self) -> str:
        return self.attributes.get(SOURCE_DELIVERY_COUNT, "?")

    @property
    def first_published(self) -> str:
        return self.attributes.get(SOURCE_PUBLISH_TIME, "")

    def fields(self) -> dict[str, str]:
        """Its attributes and the scalar fields of its JSON body."""
        fields = dict(self.attributes)
        body = self._body()
        fields.update({key: str(value) for key, value in body.items() if isinstance(value, (str, int))})
        return fields

    def _body(self) -> dict[str, object]:
        try:
            body = json.loads(self.data) if self.data else {}
        except (ValueError, UnicodeDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    def describe(self) -> str:
        """What the message was about: table, run, object."""
        fields = self.fields()
        folder, _, name = fields.get("objectId", "").rpartition("/")
        if name == MANIFEST_NAME and folder.count("/") >= 2:  # <prefix>/<table>/<run id>/_manifest.json
            fields["table"], fields["run_id"] = folder.split("/")[-2:]
        elif fields.get("objectId"):
            fields["object"] = fields["objectId"]
        shown = [f"{name}={fields[name]}" for name in ("table", "run_id", "object", "requested_by") if fields.get(name)]
        tables = self._body().get("tables")
        if isinstance(tables, list):
            shown.append(f"tables={','.join(map(str, tables)) or 'all'}")
        return " ".join(shown) or f"{len(self.data)} bytes"

    def belongs_to(self, *, root: str, project: str, dataset: str) -> bool:
        """Whether the message is about this deployment: an object under its snapshot root
        (gs://bucket/prefix), an extract request naming that root, a `table-loaded` whose manifest
        is under it, or else its dataset. Deployments that share a Pub/Sub project share its
        dead-letter subscriptions, and may share a bucket (other prefixes) or a dataset. A message
        naming none of these (an older extract request) is everyone's."""
        fields = self.fields()
        if fields.get("bucketId"):
            return under_root(f"gs://{fields['bucketId']}/{fields.get('objectId', '')}", root)
        if fields.get(DEPLOYMENT_FIELD):
            return same_root(fields[DEPLOYMENT_FIELD], root)
        if fields.get("manifest_uri"):
            return under_root(fields["manifest_uri"], root)
        if fields.get("table"):
            return fields["table"].startswith(f"{project}.{dataset}.")
        if fields.get("dataset"):
            return (fields.get("project"), fields["dataset"]) == (project, dataset)
        return True

    def attributes_to_send(self) -> dict[str, str]:
        kept = {key: value for key, value in self.attributes.items() if not key.startswith(_DEAD_LETTER_PREFIX)}
        kept[REPLAY_FOR_ATTRIBUTE] = self.function
        return kept


def source_topic(letter: DeadLetter) -> str:
    """The topic the message first came from, by the subscription that gave up on it."""
    for function, (_entry, topic) in FUNCTIONS.items():
        if letter.source_subscription == subscription_name(function):
            return topic
    if letter.source_subscription in REQUEST_SUBSCRIPTIONS:
        return REQUEST_SUBSCRIPTIONS[letter.source_subscription][1]
    if letter.source_subscription:
        raise DeadLetterError(f"{letter.function} dead letter {letter.message_id} came from subscription "
                              f"{letter.source_subscription}, which is not one of this deployment's")
    return FUNCTIONS[letter.function][1]


def _emulator() -> bool:
    return bool(os.environ.get("PUBSUB_EMULATOR_HOST"))


def readable(project: str, function: str) -> bool:
    """Whether the function has a dead-letter subscription (an extractor run as the on-prem agent has none)."""
    try:
        subscriber().get_subscription(request={"subscription": subscriber().subscription_path(
            project, dead_letter_subscription(function))})
    except gexc.NotFound:
        return False
    return True


def pulled(project: str, function: str) -> Iterator[list[DeadLetter]]:
    """Batches of the function's dead letters, until its subscription has none left to hand out."""
    path = subscriber().subscription_path(project, dead_letter_subscription(function))
    while True:
        try:
            # Pub/Sub may answer a return_immediately pull empty while messages wait; the emulator
            # would hold a waiting pull until its timeout
            response = subscriber().pull(request={"subscription": path, "max_messages": _PULL_BATCH,
                                                  "return_immediately": _emulator()}, timeout=_PULL_TIMEOUT_S)
        except gexc.NotFound:
            raise DeadLetterError(f"no subscription {dead_letter_subscription(function)} in project {project}: "
                                  f"is the deployment (or `matrix-sync stack up`) in place?") from None
        except gexc.DeadlineExceeded:
            return
        if not response.received_messages:
            return
        yield [DeadLetter(project, function, received.message.message_id, received.ack_id, received.message.data,
                          dict(received.message.attributes), received.message.publish_time)
               for received in response.received_messages]


def _by_subscription(letters: list[DeadLetter]) -> Iterator[tuple[str, list[str]]]:
    """(subscription path, ack ids) in batches Pub/Sub takes."""
    for project, function in {(letter.project, letter.function) for letter in letters}:
        ack_ids = [letter.ack_id for letter in letters if (letter.project, letter.function) == (project, function)]
        path = subscriber().subscription_path(project, dead_letter_subscription(function))
        for start in range(0, len(ack_ids), _PULL_BATCH):
            yield path, ack_ids[start:start + _PULL_BATCH]


def release(letters: list[DeadLetter]) -> None:
    """Hands the letters back at once, so they stay for the next look."""
    for path, ack_ids in _by_subscription(letters):
        subscriber().modify_ack_deadline(request={"subscription": path, "ack_ids": ack_ids, "ack_deadline_seconds": 0})


def acknowledge(letters: list[DeadLetter]) -> None:
    for path, ack_ids in _by_subscription(letters):
        subscriber().acknowledge(request={"subscription": path, "ack_ids": ack_ids})


def send_again(letter: DeadLetter) -> str:
    """Publishes the letter to its first topic; a `table-loaded` keeps its table as ordering key."""
    topic = source_topic(letter)
    ordering_key = ""
    if topic == TABLE_LOADED_TOPIC:
        ordering_key = letter.attributes.get("table", "")
    future = publisher().publish(publisher().topic_path(letter.project, topic), letter.data, ordering_key=ordering_key,
                                 **letter.attributes_to_send())
    return future.result(timeout=60)


def each_batch(places: list[tuple[str, str]], on_batch: Callable[[list[DeadLetter]], None]) -> None:
    """Hands every dead letter of `places` (project, function) to `on_batch`, which acknowledges the
    ones it is done with and keeps the others (held until their ack deadline, so the next pull hands
    out new ones); a message pulled again after its deadline passed is released at once, not handed
    twice."""
    for project, function in places:
        seen: set[str] = set()
        for batch in pulled(project, function):
            fresh = [letter for letter in batch if letter.message_id not in seen]
            again = [letter for letter in batch if letter.message_id in seen]
            if again:
                release(again)
            if not fresh:
                break
            seen.update(letter.message_id for letter in fresh)
            on_batch(fresh)
