"""state.json: what a stack root's running services are, so another process can find and stop them."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_VERSION = 1


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    pid: int
    port: int
    cmdline: list[str]      # as read from /proc once ready, to recognise the process later
    proc_start: int         # /proc/<pid>/stat start time (clock ticks since boot), guards pid reuse
    started_at: str         # ISO time, for people
    log: str


@dataclass
class StackState:
    project: str
    ports: dict[str, int]
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    # every ensure_resources() call, so a restarted Pub/Sub emulator (which keeps nothing) gets them back
    resources: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "project": self.project,
                "ports": self.ports,
                "services": {name: asdict(record) for name, record in self.services.items()},
                "resources": self.resources,
            },
            indent=2,
        )


def load_state(path: Path) -> StackState | None:
    """The recorded state, or None when there is none (or it is unreadable: treated as stopped)."""
    try:
        raw = json.loads(path.read_text())
        return StackState(
            project=raw["project"],
            ports={name: int(port) for name, port in raw["ports"].items()},
            services={name: ServiceRecord(**record) for name, record in raw["services"].items()},
            resources=[dict(entry) for entry in raw.get("resources", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(path: Path, state: StackState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.to_json())
    os.replace(temporary, path)  # atomic, so a concurrent reader never sees half a file


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)
