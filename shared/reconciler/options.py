"""How a table is reconciled: per-table settings with defaults, from one JSON document.

The reconciler function reads them once from the environment variable `MATRIX_RECONCILE`
(until the YAML config carries them), e.g.::

    {"default": {"deep": false, "max_repair_keys": 1000},
     "tables": {"customers": {"deep": true}}}

Table names are matched against the BigQuery table name and the full table id.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import logs
from shared.table_settings import overlaid

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
    merged = overlaid(document, table_id, ENV_VARIABLE, OptionsError)
    try:
        return ReconcileOptions.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        raise OptionsError(f"{ENV_VARIABLE} for {table_id}: {'.'.join(map(str, first['loc']))}: "
                           f"{first['msg']}") from None


def from_environment(table_id: str, *, deep: bool | None = None, strict: bool = False) -> ReconcileOptions:
    """The table's options from `MATRIX_RECONCILE`, with `deep` overridden when a request says so.
    A broken options document is logged and the defaults are used without repairs (what was set
    cannot be known, and a repair deletes rows), so a configuration slip never turns every message
    into a poison message; `strict` (an operator's command) raises OptionsError instead."""
    try:
        options = options_for(table_id, os.environ.get(ENV_VARIABLE))
    except OptionsError as error:
        if strict:
            raise
        log.error("checking without repairs, as the reconcile options cannot be read: %s", error)
        options = ReconcileOptions(repair=False)
    return options if deep is None else options.model_copy(update={"deep": deep})
