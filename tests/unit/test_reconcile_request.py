"""Reconcile requests and when their certificates alert, without any service."""
from __future__ import annotations

import pytest

from shared import results
from shared.reconciler.certificate import Certificate
from shared.reconciler.record import unrepaired
from shared.reconciler.request import RequestError, is_request, new_request, parse_request


def test_a_request_round_trips_and_is_told_apart_from_table_loaded() -> None:
    request = new_request(project="acme-dwh", dataset="matrix", pubsub_project="acme-dwh", tables=["dbo.Customers"],
                          deep=True, requested_by="schedule")
    assert is_request(request.body()) and parse_request(request.body()) == request
    assert request.for_table("acme-dwh.matrix.customers").tables == ["acme-dwh.matrix.customers"]
    assert not is_request({"table": "p.d.t", "run_id": "r", "manifest_uri": "gs://b/m", "deep": True})


@pytest.mark.parametrize("body, where", [
    ({"request": "reconcile", "project": "Not A Project", "dataset": "d", "pubsub_project": "p-1"}, "project"),
    ({"request": "reconcile", "project": "p-1", "dataset": "d-x", "pubsub_project": "p-1"}, "dataset"),
    ({"request": "reconcile", "project": "p-1", "dataset": "d", "pubsub_project": "p-1", "tabels": []}, "tabels"),
])
def test_a_request_it_cannot_understand_is_named_in_one_line(body: dict[str, object], where: str) -> None:
    with pytest.raises(RequestError, match=where) as caught:
        parse_request(body)
    assert "\n" not in str(caught.value)


def test_only_what_nothing_repairs_alerts() -> None:
    clean = Certificate("p.d.t", "r", verdict=results.MATCH, mode="deep", details={"deep_requested": True})
    assert unrepaired(clean) is None
    repaired = Certificate("p.d.t", "r", mode="deep", changed_rows=1, rows_restamped=1, keys_requested=1)
    assert unrepaired(repaired) is None
    left = Certificate("p.d.t", "r", mode="deep", changed_rows=1, message="repair is off")
    assert "nothing repairs it" in str(unrepaired(left))
    shallow = Certificate("p.d.t", "r", verdict=results.MATCH, details={"deep_requested": True},
                          message="deep mode unavailable (shape cannot be re-encoded); ")
    assert "deep check not possible" in str(unrepaired(shallow))
