"""The deep-reconcile Cloud Scheduler job publishes, on its own cron, a reconcile request the
reconciler understands, to the topic whose push subscription feeds the reconciler."""
from __future__ import annotations

from typing import Any

import pytest

from shared import topology
from shared.config import load_config
from shared.reconciler.request import is_request, parse_request
from tests.infra import hcl
from tests.infra.conftest import EXAMPLE_CONFIG, Evaluate


def test_the_job_publishes_the_request_to_reconcile_requests(terraform: hcl.Module, evaluate: Evaluate) -> None:
    job = terraform.resource("google_cloud_scheduler_job", "deep_reconcile")
    assert "for_each" not in job, "one job for the whole dataset; the reconciler fans it out"
    assert hcl.expression(job["schedule"]) == "var.scheduler.deep_reconcile.schedule"
    target = hcl.one(job["pubsub_target"])
    topic = "google_pubsub_topic.topic[local.topology.topics.reconcile_requests].id"
    assert hcl.expression(target["topic_name"]) == topic
    assert hcl.expression(target["data"]) == "base64encode(jsonencode(local.deep_reconcile_request))"
    assert evaluate("local.topology.topics.reconcile_requests") == topology.RECONCILE_REQUESTS_TOPIC
    feeding = {name: s for name, s in evaluate("local.consumer_subscriptions").items()
               if s["topic"] == topology.RECONCILE_REQUESTS_TOPIC}
    assert feeding == {"reconciler-requests-push": {"function": "reconciler", "push": True,
                                                    "topic": topology.RECONCILE_REQUESTS_TOPIC}}


@pytest.mark.parametrize("settings, tables", [({}, []), ({"tables": ["dbo.Customers", "orders"]},
                                                          ["dbo.Customers", "orders"])])
def test_the_message_is_a_deep_request_for_the_configs_dataset(settings: dict[str, Any], tables: list[str],
                                                                 evaluate: Evaluate) -> None:
    body = evaluate("local.deep_reconcile_request", scheduler={"deep_reconcile": settings})
    config = load_config(EXAMPLE_CONFIG, environ={})
    assert is_request(body)
    request = parse_request(body)
    assert (request.project, request.dataset, request.pubsub_project) == (
        config.bigquery.project, config.bigquery.dataset, config.pubsub.project)
    assert request.deep is True and request.tables == tables and request.requested_by == "schedule"


def test_the_schedule_is_configurable_and_weekly_by_default(evaluate: Evaluate) -> None:
    default = evaluate("var.scheduler")["deep_reconcile"]
    assert default["schedule"] == "0 4 * * 0" and default["tables"] == []
    chosen = evaluate("var.scheduler", scheduler={"deep_reconcile": {"schedule": "30 1 * * *"}})
    assert chosen["deep_reconcile"]["schedule"] == "30 1 * * *"
