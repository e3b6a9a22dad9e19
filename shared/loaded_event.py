"""What the reconciler and validator receive: a `table-loaded` message and the snapshot it names."""
from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from cloudevents.http import CloudEvent
from google.cloud import bigquery

from shared import gcs, ledger
from shared.events import EventError, pubsub_message
from shared.manifest import Manifest, Target, parse_manifest

LATEST_APPLIED = "latest_applied"  # the column `latest_applied_column` adds to a stage's query


@dataclass(frozen=True)
class LoadedSnapshot:
    manifest: Manifest
    manifest_uri: str


def is_latest_of(manifest: Manifest, latest: Mapping[str, object] | None) -> bool:
    """Whether `latest` (the ledger's newest applied row of the table, None if there is none) is the
    manifest's run. False when a newer snapshot was applied meanwhile: checking this one would compare
    the table with data it no longer should hold (the stages read `latest` with `latest_applied_column`)."""
    return latest is None or latest["run_id"] == manifest.run_id


def latest_applied_column(target: Target) -> tuple[str, list[bigquery.ScalarQueryParameter]]:
    """A select-list item `(...) AS latest_applied` and its parameter: the ledger's newest applied row
    of the table (STRUCT of run_id and recorded_at; NULL when none), as `ledger.latest_applied` picks
    it. Added to a stage's main query, the ledger and the table are read in one statement, at one
    snapshot, instead of one job for each. The query must use no parameter named `ledger_table_id`."""
    table = ledger.quoted(target.project, target.dataset)
    sql = (f"(SELECT AS STRUCT run_id, recorded_at FROM {table} "
           f"WHERE {ledger.applied_since_truncate(table, '@ledger_table_id')} "
           f"ORDER BY sequence DESC LIMIT 1) AS {LATEST_APPLIED}")
    return sql, [bigquery.ScalarQueryParameter("ledger_table_id", "STRING", target.table_id)]


def latest_applied_of(row: Mapping[str, object]) -> dict[str, object] | None:
    """The `latest_applied` value of a query's row as a dict (None: no applied row)."""
    value = row[LATEST_APPLIED]
    return dict(value) if value is not None else None  # type: ignore[call-overload]


def loaded_snapshot(event: CloudEvent) -> LoadedSnapshot:
    message = pubsub_message(event)
    manifest_uri = str(message.data.get("manifest_uri") or "")
    try:
        bucket, name = gcs.split_uri(manifest_uri)
    except ValueError as error:
        raise EventError(f"table-loaded message without a valid manifest_uri: {error}") from None
    manifest = parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=posixpath.dirname(name))
    return LoadedSnapshot(manifest, manifest_uri)
