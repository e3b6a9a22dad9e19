"""Loader: a finished snapshot's manifest arrives (GCS notification through Pub/Sub, or Eventarc's
storage event); its parts are staged and MERGEd into the BigQuery table."""
import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.loader.handler import handle_snapshot_event

logs.configure()


@functions_framework.cloud_event
def on_snapshot_event(event: CloudEvent) -> None:
    handle_snapshot_event(event)
