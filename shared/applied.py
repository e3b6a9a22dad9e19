"""The snapshot a table currently holds: the newest applied ledger row and its manifest."""
from __future__ import annotations

import posixpath

from google.api_core.exceptions import NotFound

from shared import gcs, ledger
from shared.loaded_event import LoadedSnapshot
from shared.manifest import Manifest, parse_manifest


class SnapshotGone(RuntimeError):
    """The newest applied snapshot's manifest is no longer in the bucket (its retention rule deletes
    snapshots by age): nothing to check the table against until the next extraction."""

    def __init__(self, table_id: str, run_id: str, manifest_uri: str) -> None:
        super().__init__(f"the newest applied snapshot of {table_id} ({run_id}) is gone from the bucket "
                         f"({manifest_uri}; past the bucket's retention?): the next extraction writes a full "
                         "snapshot to check against")
        self.run_id = run_id


def latest_snapshot(project: str, dataset: str, table_id: str) -> LoadedSnapshot | None:
    """The manifest of the newest applied snapshot of `table_id`, or None if none was applied;
    `SnapshotGone` if the bucket no longer holds it."""
    if not ledger_exists(project, dataset):
        return None
    row = ledger.latest_applied(project, dataset, table_id)
    if row is None or not row.get("manifest_uri"):
        return None
    uri = str(row["manifest_uri"])
    manifest = manifest_at(uri)
    if manifest is None:
        raise SnapshotGone(table_id, str(row["run_id"]), uri)
    return LoadedSnapshot(manifest, uri)


def manifest_at(uri: str) -> Manifest | None:
    """The manifest at `uri`; None when the bucket no longer holds it."""
    bucket, name = gcs.split_uri(uri)
    try:
        data = gcs.read(bucket, name)
    except NotFound:
        return None
    return parse_manifest(data, bucket=bucket, prefix=posixpath.dirname(name))


def ledger_exists(project: str, dataset: str) -> bool:
    from shared import bigquery as bq

    return bq.get_table(ledger.ledger_id(project, dataset)) is not None
