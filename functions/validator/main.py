"""Validator: after each load, runs the named data checks and stores their results."""
import functions_framework
from cloudevents.http import CloudEvent

from shared import logs
from shared.validator.handler import handle_table_loaded

logs.configure()


@functions_framework.cloud_event
def on_table_loaded(event: CloudEvent) -> None:
    handle_table_loaded(event)
