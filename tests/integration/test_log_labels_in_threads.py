"""Work done on a background thread logs with the labels of the work that started it: the agent's
ack-deadline renewer (its warning names the request's event id) and the snapshot's background
uploads (what the HTTP client warns there, a retried connection, names the run and table)."""
from __future__ import annotations

import io
import json

import pytest

from matrix_sync import agent
from matrix_sync.stack import LocalStack
from shared import logs
from shared.extractor.uploads import BackgroundUploads
from shared.manifest import Part


def _entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_the_ack_deadline_renewer_logs_with_the_requests_labels(stack: LocalStack, unique_name: str,
                                                                log_stream: io.StringIO) -> None:
    # a subscription that does not exist: the real client's NotFound is what the renewer warns about
    missing = f"projects/{stack.project}/subscriptions/gone-{unique_name}"
    with logs.labels(event_id="request-42", stage="agent"), agent._held(missing, "no-such-ack-id"):
        pass
    warned = [e for e in _entries(log_stream) if "could not extend the ack deadline" in str(e["message"])]
    assert warned, log_stream.getvalue()
    labels = warned[0]["logging.googleapis.com/labels"]
    assert isinstance(labels, dict) and labels["event_id"] == "request-42" and labels["stage"] == "agent"


def test_a_background_upload_logs_with_the_snapshots_labels(log_stream: io.StringIO) -> None:
    def upload() -> Part:
        logs.get("urllib3.connectionpool").warning("Retrying after connection broken")
        raise OSError("bucket unreachable")

    uploads = BackgroundUploads()
    with logs.labels(run_id="run-7", table="dbo.Orders"):
        uploads.submit([], upload)
        with pytest.raises(OSError):
            uploads.settle()
    (entry,) = [e for e in _entries(log_stream) if e["message"] == "Retrying after connection broken"]
    assert entry["logging.googleapis.com/labels"] == {"component": "urllib3.connectionpool", "run_id": "run-7",
                                                      "table": "dbo.Orders"}
