"""Per-table validation thresholds, with defaults, from one JSON document.

The validator function reads them once from the environment variable `MATRIX_VALIDATION` (until the
YAML config carries them), e.g.::

    {"default": {"freshness_max_age_s": 93600},
     "tables": {"payments": {"max_quarantined_rows": 5, "date_min": "1990-01-01"}}}

Table names are matched against the BigQuery table name and the full table id.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_VARIABLE = "MATRIX_VALIDATION"


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    row_count_tolerance: int = Field(default=0, ge=0, description="rows BigQuery may differ from the snapshot by")
    max_quarantined_rows: int = Field(default=0, ge=0, description="quarantined rows tolerated per snapshot")
    freshness_max_age_s: int = Field(default=26 * 3600, ge=1,
                                     description="longest time since the last applied load before the table is stale")
    allow_extra_columns: bool = Field(default=False,
                                      description="BigQuery columns the snapshot no longer has are a warning, not a failure")
    check_lengths: bool = Field(default=True, description="strings no longer than the source column's declared length")
    date_min: dt.date | None = Field(default=None, description="earliest plausible DATE/DATETIME/TIMESTAMP value")
    date_max: dt.date | None = Field(default=None, description="latest plausible DATE/DATETIME/TIMESTAMP value")
    skip: list[str] = Field(default=[], description="check names (or prefixes such as 'max_length:') not to run")

    def skipped(self, check_name: str) -> bool:
        return any(check_name == s or (s.endswith(":") and check_name.startswith(s)) for s in self.skip)


class ThresholdsError(ValueError):
    """The thresholds document is not valid; the message names the problem."""


def thresholds_for(table_id: str, document: str | Mapping[str, object] | None) -> Thresholds:
    """The thresholds of one table: the document's defaults overlaid with its entry for the table."""
    if not document:
        return Thresholds()
    try:
        data = json.loads(document) if isinstance(document, str) else dict(document)
    except ValueError as error:
        raise ThresholdsError(f"{ENV_VARIABLE} is not JSON: {error}") from None
    if not isinstance(data, dict) or not set(data) <= {"default", "tables"}:
        raise ThresholdsError(f"{ENV_VARIABLE} must be an object with 'default' and/or 'tables'")
    merged = dict(data.get("default") or {})
    tables = data.get("tables") or {}
    for key in (table_id.split(".")[-1], table_id):
        merged.update(tables.get(key) or {})
    try:
        return Thresholds.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        raise ThresholdsError(f"{ENV_VARIABLE} for {table_id}: {'.'.join(map(str, first['loc']))}: "
                              f"{first['msg']}") from None
