"""Hostile manifests: whatever a bucket holds under `_manifest.json`, parsing either yields a
manifest whose every part lies inside its snapshot folder, or raises ManifestError; nothing else."""
from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.manifest import ManifestError, parse_manifest

BUCKET, FOLDER = "bkt", "snapshots/customers/20261125T101010000001Z-abcdef"
PART = {"uri": f"gs://{BUCKET}/{FOLDER}/part-00000.parquet", "rows": 2, "bytes": 10, "md5": "x"}
VALID = {
    "format_version": 1, "run_id": "20261125T101010000001Z-abcdef", "source_table": "dbo.customers",
    "target": {"project": "acme-dwh", "dataset": "matrix", "table": "customers", "pubsub_project": "acme-dwh"},
    "mode": "full", "sequence": 5, "extracted_at": dt.datetime(2026, 11, 25, tzinfo=dt.UTC).isoformat(),
    "schema": {"columns": [{"name": "id", "bq_name": "id", "source_type": "int", "bq_type": "INT64",
                            "nullable": False}], "key": ["id"]},
    "hash": {"algorithm": "sha256-128", "encoding_version": 1},
    "parts": [PART], "row_count": 2, "fingerprint": {"count": 2, "xor60": 1, "sum32": 2},
}

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=10)


def _parse(document: object) -> None:
    manifest = parse_manifest(json.dumps(document), bucket=BUCKET, prefix=FOLDER)
    for part in manifest.all_parts:
        assert part.uri.startswith(f"gs://{BUCKET}/{FOLDER}/") and "/../" not in part.uri


def test_the_valid_document_parses() -> None:
    _parse(VALID)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(VALID)), min_size=1, max_size=3, unique=True), JSON)
def test_any_field_replaced_by_anything_is_parsed_or_refused(fields: list[str], value: object) -> None:
    document = copy.deepcopy(VALID)
    for field in fields:
        document[field] = value
    try:
        _parse(document)
    except ManifestError:
        pass


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data, bucket=BUCKET, prefix=FOLDER)


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=len(json.dumps(VALID)) - 1))
def test_truncated_manifests_are_refused(cut: int) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps(VALID)[:cut], bucket=BUCKET, prefix=FOLDER)


@pytest.mark.parametrize(("change", "reason"), [
    ({"format_version": 2}, "unknown manifest format_version"),
    ({"row_count": 10**30}, "invalid manifest"),
    ({"parts": [{**PART, "uri": f"gs://other/{FOLDER}/part-00000.parquet"}]}, "outside the snapshot folder"),
    ({"parts": [{**PART, "uri": f"gs://{BUCKET}/{FOLDER}/../../customers/x/part.parquet"}]}, "outside"),
    ({"parts": [{**PART, "uri": f"gs://{BUCKET}/snapshots/other/part.parquet"}]}, "outside"),
    ({"parts": [PART, PART], "row_count": 4, "fingerprint": {"count": 4, "xor60": 1, "sum32": 2}}, "twice"),
    ({"parts": [{**PART, "rows": -1}]}, "invalid manifest"),
    ({"fingerprint": {"count": 3, "xor60": 1, "sum32": 2}}, "invalid manifest"),
    ({"run_id": "../../etc"}, "invalid manifest"),
    ({"target": {**VALID["target"], "table": "x`; DROP TABLE y"}}, "invalid manifest"),
    ({"extra": 1}, "invalid manifest"),
    ({"target": {**VALID["target"], "table": "_SYNC_ledger"}}, "names starting with '_sync_' are the pipeline's own"),
])
def test_specific_hostile_manifests_are_refused_with_a_reason(change: dict, reason: str) -> None:
    with pytest.raises(ManifestError, match=reason):
        parse_manifest(json.dumps({**VALID, **change}), bucket=BUCKET, prefix=FOLDER)
