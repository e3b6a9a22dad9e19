"""The snapshot manifest: written last, so its arrival means the snapshot is complete.

A loader refuses any manifest it does not understand (`ManifestError`) before touching BigQuery.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared import identifiers
from shared.schema import TableSchema
from shared.topology import PIPELINE_TABLE_PREFIX

FORMAT_VERSION = 1
_RUN_ID = re.compile(r"^\d{8}T\d{6}\d{6}Z-[0-9a-f]{6}$")


class ManifestError(ValueError):
    """A manifest that cannot be applied; nothing was touched."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    project: str
    dataset: str
    table: str
    pubsub_project: str

    @model_validator(mode="after")
    def _valid(self) -> "Target":
        identifiers.gcp_project(self.project)
        identifiers.gcp_project(self.pubsub_project)
        identifiers.bigquery_dataset(self.dataset)
        identifiers.bigquery_table(self.table)
        if self.table.lower().startswith(PIPELINE_TABLE_PREFIX):  # the ledger and results tables
            raise ValueError(f"target table {self.table!r}: names starting with {PIPELINE_TABLE_PREFIX!r} are the "
                             "pipeline's own")
        return self

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


class Part(_Strict):
    uri: str
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)
    md5: str = Field(description="base64 MD5 of the object, as GCS reports it")


class Fingerprint(_Strict):
    count: int = Field(ge=0)
    xor60: int
    sum32: int = Field(ge=0)


class HashSpec(_Strict):
    algorithm: str
    encoding_version: int


class Quarantine(_Strict):
    """Rows left out of the snapshot because they could not be represented, with the reasons."""

    rows: int = Field(default=0, ge=0)
    uris: list[str] = []


class Delta(_Strict):
    """What a delta snapshot carries beyond its parts (which hold only new and changed rows)."""

    base_run_id: str = Field(description="the snapshot this delta applies on top of")
    deleted_parts: list[Part] = Field(description="Parquet files of key columns + _key_hash of deleted rows")
    deleted_rows: int = Field(ge=0)
    chain_length: int = Field(ge=1, description="deltas since the last full snapshot, this one included")
    index_patch_parts: list[Part] = Field(
        default=[], description="key columns + hashes of the new and changed rows, in key order: with the deleted "
                                "keys, what turns the base's key index into this run's (shared.key_index)")


class Manifest(_Strict):
    format_version: Literal[1]
    run_id: str
    source_table: str
    source_dialect: str | None = Field(
        default=None, exclude_if=lambda dialect: dialect is None,
        description="the source's kind (mssql, postgresql, mysql, sqlite): which type limits the source enforces; "
                    "absent: mssql, the production source, from before it was recorded")
    target: Target
    mode: Literal["full", "delta"]
    sequence: int = Field(ge=0)
    extracted_at: datetime
    table_schema: TableSchema = Field(alias="schema")
    hash: HashSpec
    parts: list[Part]
    row_count: int = Field(ge=0)
    fingerprint: Fingerprint
    quarantine: Quarantine = Quarantine()
    index_parts: list[Part] = Field(
        default=[], description="key columns + hashes of every row after this run, in key order; the next delta's "
                                "base. A delta ships only its patch (Delta.index_patch_parts) instead")
    index_raw_hash: str | None = Field(
        default=None, exclude_if=lambda tag: tag is None,
        description="how the index's (or index patch's) _raw_hash was computed (shared.raw_hash.tag()); absent: none")
    delta: Delta | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("run_id")
    @classmethod
    def _valid_run_id(cls, value: str) -> str:
        if not _RUN_ID.match(value):
            raise ValueError(f"run id {value!r} is not of the form YYYYMMDDTHHMMSSffffffZ-xxxxxx")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        shipped = sum(p.rows for p in self.parts)
        if (self.mode == "delta") != (self.delta is not None):
            raise ValueError("a delta manifest needs its delta section, and only a delta manifest has one")
        if self.mode == "full" and shipped != self.row_count:
            raise ValueError("row_count differs from the sum of the parts' rows")
        if self.delta is not None and self.delta.deleted_rows != sum(p.rows for p in self.delta.deleted_parts):
            raise ValueError("deleted_rows differs from the sum of the deleted parts' rows")
        if self.fingerprint.count != self.row_count:
            raise ValueError("fingerprint count differs from row_count")
        if self.table_schema.keyless and self.mode == "delta":
            raise ValueError("a keyless table has no delta snapshots: rows without a key cannot be matched")
        return self

    @property
    def all_parts(self) -> list[Part]:
        """Every object the snapshot consists of: row parts, deleted-key parts and index parts (or patch)."""
        delta = (self.delta.deleted_parts + self.delta.index_patch_parts) if self.delta else []
        return self.parts + delta + self.index_parts

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def parse_manifest(text: str | bytes, *, bucket: str, prefix: str) -> Manifest:
    """Parses and checks a manifest; every part must live under gs://bucket/prefix/."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ManifestError(f"manifest is not JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ManifestError("manifest is not a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise ManifestError(f"unknown manifest format_version {version!r}; this loader reads {FORMAT_VERSION}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()[:5]
        )
        raise ManifestError(f"invalid manifest: {problems}") from None
    expected = f"gs://{bucket}/{prefix.rstrip('/')}/"
    for part in manifest.all_parts:
        if not part.uri.startswith(expected) or "/../" in part.uri or part.uri.endswith("/"):
            raise ManifestError(f"part {part.uri!r} is outside the snapshot folder {expected}")
    if len({p.uri for p in manifest.all_parts}) != len(manifest.all_parts):
        raise ManifestError("manifest lists a part twice")
    return manifest
