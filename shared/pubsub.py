"""Pub/Sub adapter: JSON messages with the same fields repeated as attributes."""
from __future__ import annotations

import json
from collections.abc import Mapping

from shared.clients import publisher


def publish_json(project: str, topic: str, body: Mapping[str, object], *, ordering_key: str = "",
                 timeout_s: float = 60) -> str:
    """Publishes and waits for the server's message id, so a caller knows it was accepted."""
    attributes = {k: str(v) for k, v in body.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    future = publisher().publish(
        publisher().topic_path(project, topic),
        json.dumps(body, default=str, sort_keys=True).encode(),
        ordering_key=ordering_key,
        **attributes,
    )
    try:
        return future.result(timeout=timeout_s)
    except Exception:
        if ordering_key:
            publisher().resume_publish(publisher().topic_path(project, topic), ordering_key)
        raise
