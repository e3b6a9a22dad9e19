"""Pub/Sub adapter: JSON messages with the same fields repeated as attributes."""
from __future__ import annotations

import json
from collections.abc import Mapping

from shared.clients import publisher

# Pub/Sub refuses a message with an attribute key over 256 bytes, a value over 1,024 bytes or more
# than 100 attributes (the emulator does not check).
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ATTRIBUTES = 100
MAX_MESSAGE_BYTES = 10_000_000  # a message's data and attributes together


def encoded(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, default=str, sort_keys=True).encode()


def fits(body: Mapping[str, object]) -> bool:
    """Whether Pub/Sub takes `body` as one message (with some room for its attributes)."""
    return len(encoded(body)) + MAX_ATTRIBUTES * (MAX_ATTRIBUTE_VALUE_BYTES // 4) < MAX_MESSAGE_BYTES


def filter_attributes(body: Mapping[str, object]) -> dict[str, str]:
    """The body's scalar fields as attributes, for subscription filters; one too long for an attribute
    (an alert's reason naming many columns) is left to the body, which always carries everything."""
    attributes: dict[str, str] = {}
    for key, value in body.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            continue
        text = str(value)
        if (len(key.encode()) <= MAX_ATTRIBUTE_KEY_BYTES and len(text.encode()) <= MAX_ATTRIBUTE_VALUE_BYTES
                and len(attributes) < MAX_ATTRIBUTES):
            attributes[key] = text
    return attributes


def publish_json(project: str, topic: str, body: Mapping[str, object], *, ordering_key: str = "",
                 timeout_s: float = 60) -> str:
    """Publishes and waits for the server's message id, so a caller knows it was accepted."""
    attributes = filter_attributes(body)
    future = publisher().publish(
        publisher().topic_path(project, topic),
        encoded(body),
        ordering_key=ordering_key,
        **attributes,
    )
    try:
        return future.result(timeout=timeout_s)
    except Exception:
        if ordering_key:
            publisher().resume_publish(publisher().topic_path(project, topic), ordering_key)
        raise
