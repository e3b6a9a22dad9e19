"""Helpers for tests that tamper with BigQuery behind the pipeline's back and watch the reconciler,
the validator and the operator tools react through the real push deliveries."""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from google.api_core import exceptions as gexc

from shared import bigquery as bq
from shared import pubsub
from shared.clients import publisher, subscriber
from shared.config import Config
from shared.identifiers import quote_bigquery as q
from shared.topology import TABLE_LOADED_TOPIC


def table_id(config: Config, table: str) -> str:
    return f"{config.bigquery.project}.{config.bigquery.dataset}.{config.table(table).target_table}"


def execute(config: Config, sql: str) -> None:
    """A DML statement with `{t:<table>}` placeholders for quoted target tables."""
    for table in config.tables:
        sql = sql.replace(f"{{t:{table.target_table}}}", q(*table_id(config, table.name).split(".")))
    bq.query(config.bigquery.project, sql)


def pull_subscription(project: str, topic: str, name: str) -> str:
    """A pull subscription created now, so it sees only what is published from now on."""
    path = subscriber().subscription_path(project, name)
    try:
        subscriber().create_subscription(request={"name": path, "topic": publisher().topic_path(project, topic)})
    except gexc.AlreadyExists:
        pass
    return path


def pull_json(path: str, wanted: Callable[[dict[str, object]], bool], timeout_s: float = 60) -> dict[str, object]:
    """The first message on the subscription whose JSON body satisfies `wanted`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = subscriber().pull(request={"subscription": path, "max_messages": 50}, timeout=10)
        if response.received_messages:
            subscriber().acknowledge(request={"subscription": path,
                                              "ack_ids": [m.ack_id for m in response.received_messages]})
        for received in response.received_messages:
            body = json.loads(received.message.data)
            if wanted(body):
                return body
        time.sleep(0.5)
    raise AssertionError(f"no matching message on {path} within {timeout_s} s")


def republish_loaded(config: Config, table: str, run_id: str, manifest_uri: str, **extra: object) -> None:
    """What a redelivered (or operator-published) `table-loaded` message looks like."""
    body = {"table": table_id(config, table), "run_id": run_id, "manifest_uri": manifest_uri, "status": "duplicate",
            **extra}
    pubsub.publish_json(config.pubsub.project, TABLE_LOADED_TOPIC, body, ordering_key=table_id(config, table))


def wait_for_rows(config: Config, results_table: str, run_id: str, count: int, timeout_s: float = 90,
                  order: str = "checked_at") -> list[dict[str, object]]:
    """The rows of a results table for `run_id` once there are at least `count` of them."""
    full = q(config.bigquery.project, config.bigquery.dataset, results_table)
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = [dict(r.items()) for r in bq.query(
            config.bigquery.project, f"SELECT * FROM {full} WHERE run_id = '{run_id}' ORDER BY {order}")]
        if len(rows) >= count:
            return rows
        time.sleep(0.5)
    raise AssertionError(f"{results_table} has {len(rows)} row(s) for {run_id}, expected {count}")
