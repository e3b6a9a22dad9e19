"""How a table is reconciled: per-table settings with defaults, from one JSON document.

The reconciler function reads them once from the environment variable `MATRIX_RECONCILE`
(until the YAML config carries them), e.g.::

    {"default": {"deep": false, "max_repair_keys": 1000},
     "tables": {"customers": {"deep": true}}}

Table names are matched against the BigQuery table name and the full table id.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import logs

ENV_VARIABLE = "MATRIX_RECONCILE"
log = logs.get(__name__)


class ReconcileOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deep: bool = Field(default=False, description="rebuild every row's hashes from its data in BigQuery, "
                                                  "so edits that left the hash columns alone are caught")
    repair: bool = Field(default=True, description="delete extra rows and ask the extractor for missing ones")
    max_repair_keys: int = Field(default=1000, ge=0, description="beyond this many keys, request a full snapshot")
    sample_keys: int = Field(default=20, ge=0, le=1000, description="keys per kind kept in the certificate")


class OptionsError(ValueError):
    """The options document is not valid; the message names the problem."""


def options_for(table_id: str, document: str | Mapping[str, object] | None) -> ReconcileOptions:
    """The options of one table: the document's defaults overlaid with its entry for the table."""
    if not document:
        return ReconcileOptions()
    try:
        data = json.loads(document) if isinstance(document, str) else dict(document)
    except ValueError as error:
        raise OptionsError(f"{ENV_VARIABLE} is not JSON: {error}") from None
    if not isinstance(data, dict) or not set(data) <= {"default", "tables"}:
        raise OptionsError(f"{ENV_VARIABLE} must be an object with 'default' and/or 'tables'")
    merged = dict(data.get("default") or {})
    tables = data.get("tables") or {}
    name = table_id.split(".")[-1]
    for key in (name, table_id):
        merged.update(tables.get(key) or {})
    try:
        return ReconcileOptions.model_validate(merged)
    except ValidationError as error:
        raise OptionsError(f"{ENV_VARIABLE} for {table_id}: {error.errors()[0]['loc']}: "
                           f"{error.errors()[0]['msg']}") from None


def from_environment(table_id: str, *, deep: bool | None = None) -> ReconcileOptions:
    """The table's options from `MATRIX_RECONCILE`, with `deep` overridden when a request says so.
    A broken options document is logged and the defaults are used, so a configuration slip never
    turns every message into a poison message."""
    try:
        options = options_for(table_id, os.environ.get(ENV_VARIABLE))
    except OptionsError as error:
        log.error("using default reconcile options: %s", error)
        options = ReconcileOptions()
    return options if deep is None else options.model_copy(update={"deep": deep})
