"""Per-table validation thresholds, with defaults, from one JSON document.

The validator function reads them once from the environment variable `MATRIX_VALIDATION` (until the
YAML config carries them), e.g.::

    {"default": {"freshness_max_age_s": 93600},
     "tables": {"payments": {"max_quarantined_rows": 5, "date_min": "1990-01-01"}}}

Table names are matched against the BigQuery table name and the full table id.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.table_settings import overlaid

ENV_VARIABLE = "MATRIX_VALIDATION"
CHECKS = ("row_count", "key_unique", "key_not_null", "schema_drift", "freshness", "quarantined_rows")
COLUMN_CHECKS = ("not_null", "max_length", "decimal", "range")  # named '<check>:<column>'


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

    @field_validator("skip")
    @classmethod
    def _known_checks(cls, names: list[str]) -> list[str]:
        for name in names:
            kind, colon, _column = name.partition(":")
            if not (kind in CHECKS if not colon else kind in COLUMN_CHECKS):
                raise ValueError(f"no check is named {name!r} (checks: {', '.join(CHECKS)}; per column, as "
                                 f"'{COLUMN_CHECKS[0]}:' or '{COLUMN_CHECKS[0]}:<column>': {', '.join(COLUMN_CHECKS)})")
        return names

    @model_validator(mode="after")
    def _dates_in_order(self) -> Thresholds:
        if self.date_min and self.date_max and self.date_min > self.date_max:
            raise ValueError(f"date_min {self.date_min} is after date_max {self.date_max}")
        return self

    def skipped(self, check_name: str) -> bool:
        return any(check_name == s or (s.endswith(":") and check_name.startswith(s)) for s in self.skip)


class ThresholdsError(ValueError):
    """The thresholds document is not valid; the message names the problem."""


def thresholds_for(table_id: str, document: str | Mapping[str, object] | None) -> Thresholds:
    """The thresholds of one table: the document's defaults overlaid with its entry for the table."""
    if not document:
        return Thresholds()
    merged = overlaid(document, table_id, ENV_VARIABLE, ThresholdsError)
    try:
        return Thresholds.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ThresholdsError(f"{ENV_VARIABLE} for {table_id}: {where + ': ' if where else ''}"
                              f"{first['msg'].removeprefix('Value error, ')}") from None
