"""Validation and quoting of identifiers that come from config or from a source catalog.

Every identifier that reaches SQL text goes through one of the quote functions here, so quoting
lives in one place and nothing is interpolated raw.
"""
from __future__ import annotations

import re

_SOURCE_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#@ -]{0,127}$")
_BQ_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_BQ_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$")
_BQ_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z][a-z0-9-]{0,62}$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER")


class IdentifierError(ValueError):
    """An identifier that cannot be used safely."""


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise IdentifierError(f"invalid {what} {value!r}")
    return value


def source_part(value: str) -> str:
    """A source schema, table or column name: letters, digits, _ $ # @, space and -."""
    return _check(_SOURCE_PART, value, "source identifier")


def bigquery_column(value: str) -> str:
    _check(_BQ_COLUMN, value, "BigQuery column name")
    if value.upper().startswith(_RESERVED_PREFIXES):
        raise IdentifierError(f"invalid BigQuery column name {value!r}: reserved prefix")
    return value


def bigquery_table(value: str) -> str:
    return _check(_BQ_TABLE, value, "BigQuery table name")


def bigquery_dataset(value: str) -> str:
    return _check(_BQ_DATASET, value, "BigQuery dataset name")


def gcp_project(value: str) -> str:
    return _check(_BQ_PROJECT, value, "Google Cloud project id")


def gcs_bucket(value: str) -> str:
    return _check(_GCS_BUCKET, value, "GCS bucket name")


def quote_bigquery(*parts: str) -> str:
    """`project.dataset.table` or `column`, each part validated, backticks never inside."""
    for part in parts:
        if "`" in part or "\\" in part or not part:
            raise IdentifierError(f"cannot quote BigQuery identifier {part!r}")
    return "`" + ".".join(parts) + "`"


def bigquery_column_for(source_name: str) -> str:
    """The BigQuery column a source column lands in: the same name when BigQuery allows it,
    otherwise every disallowed character replaced by `_` (refused if that collides later)."""
    candidate = re.sub(r"[^A-Za-z0-9_]", "_", source_name)
    if not re.match(r"^[A-Za-z_]", candidate):
        candidate = "_" + candidate
    return bigquery_column(candidate)
