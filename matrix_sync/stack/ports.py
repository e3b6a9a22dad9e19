"""Which local ports the stack's services listen on, and whether a port is free."""
from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass, fields

from matrix_sync.stack.errors import StackError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class StackPorts:
    """Ports of the emulators and function servers; each can be overridden with
    MATRIX_STACK_<NAME>_PORT (e.g. MATRIX_STACK_PUBSUB_PORT, MATRIX_STACK_BIGQUERY_GRPC_PORT)."""

    pubsub: int = 8085
    gcs: int = 4443
    bigquery: int = 9050
    bigquery_grpc: int = 9060
    loader: int = 8081
    reconciler: int = 8082
    validator: int = 8083

    @classmethod
    def from_env(cls) -> StackPorts:
        """Defaults, overridden by any MATRIX_STACK_<NAME>_PORT set in the environment."""
        values: dict[str, int] = {}
        for field in fields(cls):
            variable = env_variable(field.name)
            raw = os.environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                port = int(raw)
            except ValueError:
                raise StackError(f"{variable}={raw!r} is not a port number; set it to an integer") from None
            if not 1 <= port <= 65535:
                raise StackError(f"{variable}={raw!r} is not a port number; set it to one from 1 to 65535")
            values[field.name] = port
        return cls(**values)

    @classmethod
    def free(cls) -> StackPorts:
        """Distinct ports that are free right now (for tests)."""
        with ExitStack() as held:
            picked: list[int] = []
            for _ in fields(cls):
                sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((HOST, 0))
                picked.append(sock.getsockname()[1])
        return cls(*picked)

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def env_variable(name: str) -> str:
    return f"MATRIX_STACK_{name.upper()}_PORT"


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (lingering TIME_WAIT sockets do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def port_answers(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False
