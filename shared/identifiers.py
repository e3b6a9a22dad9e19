"""Validation and quoting of identifiers that come from config or from a source catalog.

Every identifier that reaches SQL text goes through one of the quote functions here, so quoting
lives in one place and nothing is interpolated raw.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from shared.schema import KEY_HASH_COLUMN, RAW_HASH_COLUMN, ROW_HASH_COLUMN

# Source names are quoted by the source's dialect, so any printable text up to SQL Server's sysname
# length is accepted; control characters never are.
_SOURCE_PART = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_BQ_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_BQ_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$")
_BQ_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z][a-z0-9-]{0,62}$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLIDENTIFIER")
PIPELINE_COLUMNS = (KEY_HASH_COLUMN, ROW_HASH_COLUMN, RAW_HASH_COLUMN)  # beside a snapshot row's own


class IdentifierError(ValueError):
    """An identifier that cannot be used safely."""


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise IdentifierError(f"invalid {what} {value!r}")
    return value


def source_part(value: str) -> str:
    """A source schema, table or column name: up to 128 printable characters, no surrounding spaces."""
    _check(_SOURCE_PART, value, "source identifier")
    if value != value.strip():
        raise IdentifierError(f"invalid source identifier {value!r}: leading or trailing space")
    return value


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


_ESCAPE = re.compile(r"_x([0-9A-F]{4})_|_U([0-9A-F]{8})_")


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"_x{code:04X}_" if code <= 0xFFFF else f"_U{code:08X}_"


def bigquery_column_for(source_name: str) -> str:
    """The BigQuery name a source column lands under (see `bigquery_name_for`). A column named like
    one matrix-sync adds to every row (`_key_hash`, `_row_hash`, in any case) has its first
    character escaped too, so it lands beside them as `_x005F_row_hash`."""
    return bigquery_name_for(source_name, reserved=PIPELINE_COLUMNS)


def bigquery_name_for(source_name: str, reserved: tuple[str, ...] = ()) -> str:
    """The BigQuery name a source column or table lands under.

    A name BigQuery accepts as it is stays as it is. Otherwise every character outside
    [A-Za-z0-9_] (and a leading digit) becomes `_xHHHH_` (`_UHHHHHHHH_` beyond the BMP), the rule
    of XML name encoding; an underscore that would start such a sequence is itself escaped as
    `_x005F_`. The mapping is reversible by `source_name_for`, so two source names never collide.
    """
    taken = source_name.lower() in reserved
    if _BQ_COLUMN.match(source_name) and not _ESCAPE.search(source_name) \
            and not source_name.upper().startswith(_RESERVED_PREFIXES) and not taken:
        return source_name
    out = []
    for position, char in enumerate(source_name):
        starts_escape = char == "_" and _ESCAPE.match(source_name, position) is not None
        plain = char.isascii() and (char.isalnum() or char == "_") and not (position == 0 and char.isdigit())
        out.append(char if plain and not starts_escape else _escape_char(char))
    encoded = "".join(out)
    if encoded.upper().startswith(_RESERVED_PREFIXES) or encoded.lower() in reserved:
        encoded = _escape_char(encoded[0]) + encoded[1:]
    return bigquery_column(encoded)


def source_name_for(bigquery_name: str) -> str:
    """Inverse of `bigquery_column_for`."""
    return _ESCAPE.sub(lambda m: chr(int(m[1] or m[2], 16)), bigquery_name)


# Field types for pydantic models that carry a project or dataset name (config, requests).
GcpProject = Annotated[str, AfterValidator(gcp_project)]
BigQueryDataset = Annotated[str, AfterValidator(bigquery_dataset)]
