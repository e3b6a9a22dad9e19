"""Extractor as a function (cloud-hosted with VPC access): an extract request from Cloud Scheduler
names a table group; each table is snapshotted to GCS. The on-prem agent runs the same code
through `matrix-sync run`."""
import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.extractor.handler import handle_extract_request

logs.configure()


@functions_framework.cloud_event
def on_extract_request(event: CloudEvent) -> None:
    handle_extract_request(event)
