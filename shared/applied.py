"""The snapshot a table currently holds: the newest applied ledger row and its manifest."""
from __future__ import annotations

import posixpath

from shared import gcs, ledger
from shared.loaded_event import LoadedSnapshot
from shared.manifest import parse_manifest


def latest_snapshot(project: str, dataset: str, table_id: str) -> LoadedSnapshot | None:
    """The manifest of the newest applied snapshot of `table_id`, or None if none was applied."""
    if not ledger_exists(project, dataset):
        return None
    row = ledger.latest_applied(project, dataset, table_id)
    if row is None or not row.get("manifest_uri"):
        return None
    uri = str(row["manifest_uri"])
    bucket, name = gcs.split_uri(uri)
    manifest = parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=posixpath.dirname(name))
    return LoadedSnapshot(manifest, uri)


def ledger_exists(project: str, dataset: str) -> bool:
    from shared import bigquery as bq

    return bq.get_table(ledger.ledger_id(project, dataset)) is not None
