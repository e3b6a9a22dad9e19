import logging

from cloudevents.http import CloudEvent


def handle_extract_request(event: CloudEvent) -> None:
    logging.getLogger(__name__).warning("received %s %s", event["type"], event.data)
