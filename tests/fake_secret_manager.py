"""A tiny Secret Manager for tests (Google ships no emulator): AccessSecretVersion over REST, the
request the real client's REST transport sends, answered as the v1 API documents it."""
from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c

_ACCESS = re.compile(r"^/v1/(?P<name>projects/[^/]+/secrets/[^/]+/versions/[^/:]+):access$")


@dataclass
class FakeSecretManager:
    endpoint: str
    versions: dict[str, bytes] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)


def _handler(state: FakeSecretManager) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            state.requests.append(path)
            match = _ACCESS.match(path)
            if match is None:
                return self._error(404, "NOT_FOUND", "unknown method")
            name = match["name"]
            if name in state.forbidden:
                return self._error(403, "PERMISSION_DENIED",
                                   f"Permission 'secretmanager.versions.access' denied for resource '{name}'")
            if name not in state.versions:
                return self._error(404, "NOT_FOUND", f"Secret Version [{name}] not found.")
            data = state.versions[name]
            self._json(200, {"name": name, "payload": {
                "data": base64.b64encode(data).decode(), "dataCrc32c": str(google_crc32c.value(data))}})

        def _error(self, code: int, status: str, message: str) -> None:
            self._json(code, {"error": {"code": code, "message": message, "status": status}})

        def _json(self, code: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_secret_manager() -> Iterator[FakeSecretManager]:
    state = FakeSecretManager(endpoint="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
