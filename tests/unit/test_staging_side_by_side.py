"""A delta's rows and deleted keys are staged at the same time, each under its own fixed job ids
(the staging of one part list is unchanged, only run beside the other), with the event's log labels
on the thread's lines; if either fails, the other's table is dropped too and the failure raised."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
from google.cloud import bigquery

from shared import logs
from shared.loader import staging
from shared.loader.errors import RefusedError
from shared.manifest import Delta, Fingerprint, HashSpec, Manifest, Part, Target
from shared.schema import Column, TableSchema

RUN = "20261125T101010000001Z-aaaaaa"


def manifest(*, delta: bool = True) -> Manifest:
    schema = TableSchema(columns=[Column(name="id", bq_name="id", source_type="int", bq_type="INT64")], key=["id"])
    folder = f"gs://b/snapshots/t/{RUN}"
    deleted = Delta(base_run_id="base", deleted_parts=[Part(uri=f"{folder}/deleted-00000.parquet", rows=2, bytes=9,
                                                            md5="D")], deleted_rows=2, chain_length=1)
    return Manifest(
        format_version=1, run_id=RUN, source_table="dbo.T",
        target=Target(project="p-test", dataset="d", table="t", pubsub_project="p-test"),
        mode="delta" if delta else "full", sequence=2, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
        schema=schema, hash=HashSpec(algorithm="sha256-128", encoding_version=1),
        parts=[Part(uri=f"{folder}/part-00000.parquet", rows=3, bytes=10, md5="A")], row_count=3,
        fingerprint=Fingerprint(count=3, xor60=0, sum32=0), delta=deleted if delta else None,
    )


class FakeStaging:
    """Stands in for the staging of one part list; `fail` names the one that raises."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: str | None = None, together: int = 2) -> None:
        self.fail = fail
        self.together = threading.Barrier(together, timeout=30)
        self.labels: dict[str, dict[str, str]] = {}
        self.dropped: list[str] = []
        monkeypatch.setattr(staging, "_stage_parts", self.stage_parts)
        monkeypatch.setattr(staging.bq, "ensure_dataset", lambda *a, **k: SimpleNamespace(location="US"))
        monkeypatch.setattr(staging.bq, "drop_table", self.dropped.append)

    def stage_parts(self, manifest: Manifest, what: str, fields: list[bigquery.SchemaField], parts: Sequence[Part],
                    location: str | None) -> str:
        self.labels[what] = dict(logs._labels.get())
        self.together.wait()  # both part lists are being staged at this moment, or this times out
        if what == self.fail:
            raise RefusedError(f"{what} failed")
        return staging.attempt(manifest, what, 1).table_id


def test_rows_and_deleted_keys_are_staged_at_once_under_their_fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeStaging(monkeypatch)
    with logs.labels(run_id=RUN, table="p-test.d.t"):
        staged = staging.stage(manifest())
    assert staged == staging.Staged(staging.attempt(manifest(), staging.ROWS, 1).table_id,
                                    staging.attempt(manifest(), staging.DELETED, 1).table_id)
    assert fake.labels[staging.DELETED] == fake.labels[staging.ROWS] == {"run_id": RUN, "table": "p-test.d.t"}
    assert fake.dropped == []


def test_a_full_snapshot_stages_its_rows_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeStaging(monkeypatch, together=1)
    full = manifest(delta=False)
    assert staging.stage(full).tables == [staging.attempt(full, staging.ROWS, 1).table_id]


@pytest.mark.parametrize("fail, other", [(staging.DELETED, staging.ROWS), (staging.ROWS, staging.DELETED)])
def test_when_one_staging_fails_the_others_table_is_dropped_too(monkeypatch: pytest.MonkeyPatch, fail: str,
                                                               other: str) -> None:
    fake = FakeStaging(monkeypatch, fail=fail)
    with pytest.raises(RefusedError, match=f"{fail} failed"):
        staging.stage(manifest())
    assert fake.dropped == [staging.attempt(manifest(), other, 1).table_id]
