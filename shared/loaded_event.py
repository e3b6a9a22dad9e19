"""What the reconciler and validator receive: a `table-loaded` message and the snapshot it names."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

from cloudevents.http import CloudEvent

from shared import gcs, ledger
from shared.events import EventError, pubsub_message
from shared.manifest import Manifest, parse_manifest


@dataclass(frozen=True)
class LoadedSnapshot:
    manifest: Manifest
    manifest_uri: str

    @property
    def is_latest(self) -> bool:
        """False when a newer snapshot was applied meanwhile: checking this one would compare the
        table with data it no longer should hold."""
        target = self.manifest.target
        latest = ledger.latest_applied(target.project, target.dataset, target.table_id)
        return latest is None or latest["run_id"] == self.manifest.run_id


def loaded_snapshot(event: CloudEvent) -> LoadedSnapshot:
    message = pubsub_message(event)
    manifest_uri = str(message.data.get("manifest_uri") or "")
    try:
        bucket, name = gcs.split_uri(manifest_uri)
    except ValueError as error:
        raise EventError(f"table-loaded message without a valid manifest_uri: {error}") from None
    manifest = parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=posixpath.dirname(name))
    return LoadedSnapshot(manifest, manifest_uri)
