"""A BigQuery that accepts connections and never answers fails the call instead of holding it forever."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from shared import clients


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # held open, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.timeout(60)
def test_a_silent_bigquery_times_out(silent_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(clients.BIGQUERY_EMULATOR_HOST, silent_endpoint)
    monkeypatch.setenv(clients.REQUEST_TIMEOUT_ENV, "0.5")
    clients.reset_clients()
    try:
        with pytest.raises(requests.exceptions.Timeout):
            clients.bigquery_client("p").get_dataset("p.d", retry=None)
    finally:
        clients.reset_clients()


def test_the_timeout_defaults_to_two_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clients.REQUEST_TIMEOUT_ENV, raising=False)
    assert clients.request_timeout_s() == clients.DEFAULT_REQUEST_TIMEOUT_S == 120.0
