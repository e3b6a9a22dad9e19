"""The loader's decisions without any service: ledger verdicts, schema plans, conflict retries,
fault injection and event parsing."""
from __future__ import annotations

import datetime as dt

import pytest
from cloudevents.http import CloudEvent
from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared.events import EventError, storage_object
from shared.ledger import APPLIED, STALE, Entry, History
from shared.loader import faults
from shared.loader.conflicts import is_conflict, retry_on_conflict
from shared.loader.decide import Verdict, decide
from shared.loader.errors import SchemaChangeError
from shared.loader.schema_plan import plan
from shared.manifest import Delta, Fingerprint, HashSpec, Manifest, Target
from shared.schema import Column, TableSchema

RUN = "20261125T101010000001Z-aaaaaa"
BASE = "20261125T091010000001Z-bbbbbb"
OTHER = "20261125T081010000001Z-cccccc"


def schema(**types: str) -> TableSchema:
    columns = [Column(name=n, bq_name=n, source_type="x", bq_type=t) for n, t in (types or {"id": "INT64", "v": "STRING"}).items()]
    return TableSchema(columns=columns, key=[columns[0].name])


def manifest(sequence: int = 10, *, base: str | None = None, table_schema: TableSchema | None = None) -> Manifest:
    return Manifest(
        format_version=1, run_id=RUN, source_table="dbo.T",
        target=Target(project="p-test", dataset="d", table="t", pubsub_project="p-test"),
        mode="delta" if base else "full", sequence=sequence, extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
        schema=table_schema or schema(), hash=HashSpec(algorithm="sha256-128", encoding_version=1), parts=[],
        row_count=0, fingerprint=Fingerprint(count=0, xor60=0, sum32=0),
        delta=Delta(base_run_id=base, deleted_parts=[], deleted_rows=0, chain_length=1) if base else None,
    )


OURS = "gs://bucket/snapshots"
THEIRS = "gs://bucket/other-deployment"


def entry(run_id: str, sequence: int, status: str = APPLIED, published: bool = True,
          hashed_columns: tuple[str, ...] | None = None, root: str | None = OURS) -> Entry:
    return Entry(run_id, sequence, status, published, ("id",), hashed_columns,
                 f"{root}/t/{run_id}/_manifest.json" if root else None)


def applied_with(key: tuple[str, ...] | None = ("id",), hashed_columns: tuple[str, ...] | None = None) -> Entry:
    """The ledger's row of the last applied snapshot, as `plan` reads it."""
    return Entry(OTHER, 9, APPLIED, True, key, hashed_columns)


@pytest.mark.parametrize(("m", "entries", "latest", "verdict"), [
    (manifest(), [], None, Verdict.APPLY),
    (manifest(), [entry(RUN, 10)], entry(RUN, 10), Verdict.DUPLICATE),
    (manifest(), [entry(RUN, 10, STALE)], entry(OTHER, 12), Verdict.STALE),
    (manifest(10), [], entry(OTHER, 10), Verdict.STALE),
    (manifest(10), [], entry(OTHER, 9), Verdict.APPLY),
    (manifest(base=BASE), [entry(BASE, 9)], entry(BASE, 9), Verdict.APPLY),
    (manifest(base=BASE), [], None, Verdict.WAIT_FOR_BASE),
    (manifest(base=BASE), [], entry(OTHER, 8), Verdict.WAIT_FOR_BASE),
    (manifest(base=BASE), [entry(BASE, 8)], entry(OTHER, 9), Verdict.BASE_SUPERSEDED),
    (manifest(base=BASE), [entry(BASE, 9)], entry(OTHER, 11), Verdict.STALE),
], ids=["first", "duplicate", "stale-recorded", "same-sequence", "newer", "delta-on-latest", "delta-no-history",
        "delta-base-later", "delta-base-superseded", "delta-stale"])
def test_ledger_verdicts(m: Manifest, entries: list[Entry], latest: Entry | None, verdict: Verdict) -> None:
    assert decide(m, History(tuple(entries), latest), f"{OURS}/t/{RUN}/_manifest.json", table_exists=True).verdict \
        is verdict


@pytest.mark.parametrize(("m", "latest", "table_exists", "verdict"), [
    (manifest(), entry(OTHER, 9, root=THEIRS), True, Verdict.FOREIGN),
    (manifest(base=BASE), entry(BASE, 9, root=THEIRS), True, Verdict.FOREIGN),
    (manifest(), entry(OTHER, 12, root=THEIRS), True, Verdict.FOREIGN),
    # the BigQuery table dropped by an operator hands it to whoever loads it next
    (manifest(), entry(OTHER, 9, root=THEIRS), False, Verdict.APPLY),
    # a ledger row without a manifest URI (written by hand, or by an old loader) proves nothing
    (manifest(), entry(OTHER, 9, root=None), True, Verdict.APPLY),
    (manifest(), entry(OTHER, 9, root="gs://bucket/snapshots-2"), True, Verdict.FOREIGN),
], ids=["full", "delta", "even-if-stale", "table-dropped", "no-uri", "prefix-sharing-a-start"])
def test_a_table_loaded_by_another_deployment_is_refused(m: Manifest, latest: Entry, table_exists: bool,
                                                         verdict: Verdict) -> None:
    decision = decide(m, History((), latest), f"{OURS}/t/{RUN}/_manifest.json", table_exists=table_exists)
    assert decision.verdict is verdict
    if verdict is Verdict.FOREIGN:
        assert decision.reason.startswith(f"the table is loaded from {latest.manifest_uri.rsplit('/', 3)[0]} "
                                          f"(run {latest.run_id}), this snapshot comes from {OURS}")


def table(fields: dict[str, str], clustering: list[str] | None = None) -> bigquery.Table:
    t = bigquery.Table("p-test.d.t", schema=[bigquery.SchemaField(n, k) for n, k in fields.items()]
                       + [bigquery.SchemaField("_key_hash", "STRING"), bigquery.SchemaField("_row_hash", "STRING")])
    t.clustering_fields = clustering
    return t


def test_new_table_is_created_and_same_schema_changes_nothing() -> None:
    assert plan(None, manifest(), None).create
    same = plan(table({"id": "INTEGER", "v": "STRING"}, ["id"]), manifest(), applied_with())
    assert not same.create and not same.added and not same.widened and not same.reordered


def test_new_columns_and_exact_widenings_are_planned() -> None:
    m = manifest(table_schema=schema(id="INT64", amount="NUMERIC", big="BIGNUMERIC", note="STRING"))
    result = plan(table({"id": "INT64", "amount": "INT64", "big": "NUMERIC"}), m, applied_with())
    assert [f.name for f in result.added] == ["note"]
    assert result.widened == {"amount": "NUMERIC", "big": "BIGNUMERIC"}


@pytest.mark.parametrize(("have", "want", "message"), [
    ({"id": "INT64", "v": "INT64"}, {"id": "INT64", "v": "STRING"}, "change type from INT64 to STRING"),
    ({"id": "INT64", "v": "NUMERIC"}, {"id": "INT64", "v": "INT64"}, "narrow from NUMERIC to INT64"),
    ({"id": "INT64", "v": "INT64"}, {"id": "INT64", "v": "FLOAT64"}, "change type from INT64 to FLOAT64"),
    ({"id": "INT64", "v": "STRING", "gone": "STRING"}, {"id": "INT64", "v": "STRING"}, "gone of p-test.d.t are not in"),
])
def test_lossy_schema_changes_are_refused(have: dict[str, str], want: dict[str, str], message: str) -> None:
    with pytest.raises(SchemaChangeError, match=message):
        plan(table(have), manifest(table_schema=schema(**want)), applied_with())


def test_a_key_change_is_refused_by_ledger_key_or_by_clustering() -> None:
    m = manifest(table_schema=TableSchema(columns=schema(id="INT64", v="STRING").columns, key=["v"]))
    with pytest.raises(SchemaChangeError, match=r"key of p-test.d.t would change from \(id\) to \(v\)"):
        plan(table({"id": "INT64", "v": "STRING"}), m, applied_with())
    with pytest.raises(SchemaChangeError, match="key"):
        plan(table({"id": "INT64", "v": "STRING"}, ["id"]), m, applied_with(key=None))


def test_columns_that_changed_places_since_the_last_snapshot_rewrite_every_row() -> None:
    swapped = manifest(table_schema=schema(id="INT64", t="STRING", v="STRING"))
    bq_table = table({"id": "INT64", "v": "STRING", "t": "STRING"})
    assert plan(bq_table, swapped, applied_with(hashed_columns=("id", "v", "t"))).reordered == ("id", "v", "t")
    # Without the ledger's record (an older loader wrote it) the table's own column order stands in.
    assert plan(bq_table, swapped, applied_with()).reordered == ("id", "v", "t")
    # A column the source added in the middle (MySQL's ADD ... AFTER) is appended in BigQuery: only
    # the first load compares with the table's order; the ledger's record keeps later ones as they are.
    added = manifest(table_schema=schema(id="INT64", n="STRING", v="STRING"))
    assert not plan(table({"id": "INT64", "v": "STRING"}), added, applied_with(hashed_columns=("id", "v"))).reordered
    settled = plan(table({"id": "INT64", "v": "STRING", "n": "STRING"}), added,
                   applied_with(hashed_columns=("id", "n", "v")))
    assert not settled.reordered and not settled.added


def test_columns_added_in_bigquery_are_kept_and_columns_gone_from_the_source_refused() -> None:
    m = manifest(table_schema=schema(id="INT64", v="STRING"))
    with_note = table({"id": "INT64", "v": "STRING", "analyst_note": "STRING"})
    assert plan(with_note, m, applied_with(hashed_columns=("id", "v"))).kept == ("analyst_note",)
    with pytest.raises(SchemaChangeError, match="analyst_note of p-test.d.t were in the last applied snapshot"):
        plan(with_note, m, applied_with(hashed_columns=("id", "v", "analyst_note")))
    with pytest.raises(SchemaChangeError, match=r"not in the snapshot \(dropped or renamed in the source, or added"):
        plan(with_note, m, applied_with())


def test_conflicts_are_retried_with_backoff_and_other_errors_are_not() -> None:
    pauses: list[float] = []
    calls = iter([gexc.BadRequest("Transaction is aborted due to concurrent update against table x"),
                  gexc.InternalServerError("Could not serialize access to table x due to concurrent update"), "done"])

    def action() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry_on_conflict(action, sleep=pauses.append) == "done"
    assert len(pauses) == 2 and 0.25 <= pauses[0] <= 0.5 and 0.5 <= pauses[1] <= 1.0
    assert not is_conflict(gexc.BadRequest("Syntax error"))
    with pytest.raises(gexc.BadRequest, match="Syntax"):
        retry_on_conflict(lambda: (_ for _ in ()).throw(gexc.BadRequest("Syntax error")), sleep=pauses.append)
    with pytest.raises(gexc.BadRequest, match="concurrent"):
        retry_on_conflict(lambda: (_ for _ in ()).throw(gexc.BadRequest("Transaction is aborted due to concurrent update")),
                          attempts=3, sleep=lambda _s: None)


def test_faults_fire_only_where_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.FAULT_VARIABLE, raising=False)
    for point in faults.POINTS:
        faults.inject(point)
    monkeypatch.setenv(faults.FAULT_VARIABLE, faults.BEFORE_PUBLISH)
    faults.inject(faults.AFTER_STAGE)
    with pytest.raises(faults.InjectedFault, match="before_publish"):
        faults.inject(faults.BEFORE_PUBLISH)


def test_both_storage_event_shapes_name_the_object() -> None:
    source = "//storage.googleapis.com/projects/_/buckets/b"
    direct = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": source, "id": "1"},
                        {"bucket": "b", "name": "snapshots/t/r/_manifest.json", "generation": "7"})
    found = storage_object(direct)
    assert found is not None and (found.bucket, found.name, found.generation, found.is_manifest) == (
        "b", "snapshots/t/r/_manifest.json", "7", True)
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "snapshots/t/r/part-00000.parquet",
                  "objectGeneration": "8", "payloadFormat": "JSON_API_V1"}
    pushed = CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "2"},
                        {"message": {"attributes": attributes, "data": ""}})
    part = storage_object(pushed)
    assert part is not None and not part.is_manifest
    deleted = CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub", "id": "3"},
                         {"message": {"attributes": {**attributes, "eventType": "OBJECT_DELETE"}}})
    assert storage_object(deleted) is None
    with pytest.raises(EventError, match="without bucket"):
        storage_object(CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": source, "id": "4"}, {}))


def test_tables_are_clustered_only_by_key_columns_bigquery_can_cluster_by(monkeypatch: pytest.MonkeyPatch) -> None:
    """BigQuery refuses a table clustered by a BYTES, FLOAT64 or TIME column (the emulator drops
    clustering, so only the request can be seen): a binary(16) key's first load failed to create it."""
    from shared.loader import schema_plan

    m = manifest(table_schema=TableSchema(columns=schema(k="BYTES", i="INT64", v="STRING").columns, key=["k", "i"]))
    created: dict[str, object] = {}
    monkeypatch.setattr(schema_plan.bq, "create_table",
                        lambda table_id, fields, clustering=None: created.update(clustering=clustering))
    schema_plan.apply(m, plan(None, m, None))
    assert created["clustering"] == ["i"]
    # a table created so (by the loader or create-tables) is not taken for a key change
    assert not plan(table({"k": "BYTES", "i": "INT64", "v": "STRING"}, ["i"]), m, None).create
