"""Reconcile requests: what Cloud Scheduler (and `matrix-sync reconcile --publish`) publishes to
`reconcile-requests` to have tables checked without a load, deep by default.

    {"request": "reconcile", "deep": true, "project": "acme-dwh", "dataset": "matrix",
     "pubsub_project": "acme-dwh", "tables": ["dbo.Customers"], "requested_by": "schedule"}

`tables` empty means every table with an applied snapshot; a name is a BigQuery table name, a full
table id or a source table name. Terraform builds the scheduled body (infra/topology.tf,
`local.deep_reconcile_request`) and tests/infra checks it parses here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from shared import identifiers

REQUEST_KIND = "reconcile"


class RequestError(ValueError):
    """A reconcile request that cannot be understood; the message names the problem."""


class ReconcileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request: Literal["reconcile"]
    project: identifiers.GcpProject
    dataset: identifiers.BigQueryDataset
    pubsub_project: identifiers.GcpProject
    tables: list[str] = []
    deep: bool | None = True  # None: each table's own `deep` setting (MATRIX_RECONCILE)
    requested_by: str = "schedule"

    def body(self) -> dict[str, object]:
        return self.model_dump()

    def for_table(self, table_id: str) -> ReconcileRequest:
        return self.model_copy(update={"tables": [table_id]})


def is_request(data: Mapping[str, object]) -> bool:
    """Tells a reconcile request from a `table-loaded` message on the reconciler's one entry point."""
    return data.get("request") == REQUEST_KIND


def parse_request(data: Mapping[str, object]) -> ReconcileRequest:
    try:
        return ReconcileRequest.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestError(f"reconcile request not understood: {where}: {first['msg']}") from None


def new_request(*, project: str, dataset: str, pubsub_project: str, tables: list[str], deep: bool | None,
                requested_by: str) -> ReconcileRequest:
    return ReconcileRequest(request=REQUEST_KIND, project=project, dataset=dataset, pubsub_project=pubsub_project,
                            tables=tables, deep=deep, requested_by=requested_by)
