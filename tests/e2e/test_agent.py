"""Cloud Scheduler's path: an extract request on Pub/Sub, pulled by the on-prem agent, becomes a
snapshot that the chain loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.agent import ensure_subscription
from matrix_sync.stack import LocalStack
from shared.clients import publisher, subscriber
from shared.pubsub import publish_json
from shared.topology import EXTRACT_REQUESTS_TOPIC
from tests.e2e.test_cli import matrix_sync
from tests.support import assert_tables_equal, ensure_resources, wait_for_applied, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_scheduled_request_is_pulled_by_the_agent_and_loaded(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=9)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "payments": ["account_id", "payment_no"]},
                          suffix=unique_name)
    requested = matrix_sync("request", "--config", str(tmp_path / "config.yaml"), "--table", "payments",
                            stack=stack, cwd=tmp_path)
    assert requested.returncode == 0, requested.stderr
    served = matrix_sync("agent", "--config", str(tmp_path / "config.yaml"), "--once", stack=stack, cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert "payments: full snapshot" in served.stdout and "accounts" not in served.stdout.split("waiting")[1]
    wait_for_applied(config, "payments")
    ran = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), "--table", "accounts", stack=stack, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert_tables_equal(config)


def test_requests_that_name_nothing_it_can_extract_are_dropped_and_the_agent_keeps_serving(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """Not JSON, not an object, only tables of another config: each is dropped with its reason (it
    would fail the same way on every delivery); a table unknown beside a known one is left out."""
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=10)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "payments": ["account_id", "payment_no"]},
                          suffix=unique_name)
    ensure_subscription(config)
    topic = publisher().topic_path(config.pubsub.project, EXTRACT_REQUESTS_TOPIC)
    for body in (b"not json", b"[1, 2]", b'{"tables": ["elsewhere"]}', b'{"tables": ["elsewhere", "PAYMENTS"]}'):
        publisher().publish(topic, body).result(timeout=30)

    served = matrix_sync("agent", "--config", str(tmp_path / "config.yaml"), "--idle-timeout", "5",
                         stack=stack, cwd=tmp_path)

    assert served.returncode == 0, served.stdout + served.stderr
    assert "handled 4 request(s)" in served.stdout
    assert served.stdout.count("full snapshot") == 1 and "payments: full snapshot" in served.stdout
    assert "accounts" not in served.stdout.split("waiting")[1]
    assert served.stderr.count("dropped extract request") == 3, served.stderr
    assert "not in this extractor's config, left out: elsewhere" in served.stderr
    wait_for_applied(config, "payments")
    assert not subscriber().pull(subscription=ensure_subscription(config), max_messages=5,
                                 timeout=10).received_messages


def test_a_request_for_a_table_not_in_the_config_is_refused_and_not_published(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{tmp_path / 'matrix.db'}",
                          tables={"payments": ["account_id", "payment_no"]}, suffix=unique_name)
    subscription = ensure_subscription(config)

    requested = matrix_sync("request", "--config", str(tmp_path / "config.yaml"), "--table", "paymnts",
                            stack=stack, cwd=tmp_path)

    assert requested.returncode == 2, requested.stdout + requested.stderr
    assert requested.stderr.strip() == "error: table 'paymnts' is not in the config (its tables: payments)"
    assert not subscriber().pull(subscription=subscription, max_messages=5, timeout=5).received_messages


def test_a_request_published_before_any_agent_ran_waits_for_the_agent(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """The reconciler's repairs reach `extract-requests` whenever they happen; before any agent or
    `request` had created the agent's subscription, the local stack dropped them."""
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=12)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"accounts": ["account_id"]},
                          suffix=unique_name)
    ensure_resources(stack, config)  # what `run` or a reconciler's first check sets up, no agent yet
    publish_json(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, {"tables": ["accounts"]})

    served = matrix_sync("agent", "--config", str(tmp_path / "config.yaml"), "--once", stack=stack, cwd=tmp_path)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "accounts: full snapshot" in served.stdout
