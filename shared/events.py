"""Turning CloudEvents into what the stages act on.

The loader accepts both ways a finished object is announced: a Pub/Sub message carrying GCS's
notification attributes (bucket notification path) and Eventarc's direct storage event.
"""
from __future__ import annotations

import base64
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.http import CloudEvent

from shared.topology import MANIFEST_NAME

PUBSUB_EVENT = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
# Set on a dead letter sent again (`matrix-sync dead-letters --replay`) to the function it was meant
# for: its topic may feed others too (table-loaded feeds reconciler and validator).
REPLAY_FOR_ATTRIBUTE = "matrix_replay_for"


class EventError(ValueError):
    """An event this function cannot act on; acknowledged, never retried."""


@dataclass(frozen=True)
class StorageObject:
    bucket: str
    name: str
    generation: str
    event_type: str

    @property
    def is_manifest(self) -> bool:
        """Only a manifest starts a load; every part's own finalize event is dropped on this alone."""
        return posixpath.basename(self.name) == MANIFEST_NAME


@dataclass(frozen=True)
class Message:
    data: dict[str, Any]
    attributes: dict[str, str]
    message_id: str


def event_id(event: CloudEvent) -> str:
    return str(event["id"])


def meant_for_another(event: CloudEvent, function: str) -> bool:
    """Whether the event is a dead letter sent again for some other function than `function`."""
    data = event.data if isinstance(event.data, dict) else {}
    attributes = (data.get("message") or {}).get("attributes") or {}
    replay_for = attributes.get(REPLAY_FOR_ATTRIBUTE)
    return replay_for is not None and replay_for != function


def pubsub_message(event: CloudEvent) -> Message:
    if event["type"] != PUBSUB_EVENT:
        raise EventError(f"expected a Pub/Sub event, got {event['type']}")
    message = (event.data or {}).get("message") or {}
    try:
        raw = base64.b64decode(message.get("data") or "")
    except ValueError as error:
        raise EventError(f"message body is not base64: {error}") from None
    return parsed_message(raw, message.get("attributes") or {}, str(message.get("messageId") or event["id"]))


def parsed_message(raw: bytes, attributes: Mapping[str, str], message_id: str) -> Message:
    """A message whose body is a JSON object (an empty body is `{}`); EventError otherwise."""
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError) as error:
        raise EventError(f"message body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise EventError("message body is not a JSON object")
    return Message(data, dict(attributes), message_id)


def storage_object(event: CloudEvent) -> StorageObject | None:
    """The finalized object an event announces, or None for events about anything else."""
    if event["type"] == STORAGE_FINALIZED:
        data = event.data if isinstance(event.data, dict) else {}
        found = StorageObject(str(data.get("bucket") or ""), str(data.get("name") or ""),
                              str(data.get("generation") or ""), "OBJECT_FINALIZE")
    elif event["type"] == PUBSUB_EVENT:
        attributes = ((event.data or {}).get("message") or {}).get("attributes") or {}
        if attributes.get("eventType") != "OBJECT_FINALIZE":
            return None
        found = StorageObject(attributes.get("bucketId", ""), attributes.get("objectId", ""),
                              attributes.get("objectGeneration", ""), "OBJECT_FINALIZE")
    else:
        raise EventError(f"unsupported event type {event['type']}")
    if not found.bucket or not found.name:
        raise EventError(f"{event['type']} event without bucket and object name")
    return found
