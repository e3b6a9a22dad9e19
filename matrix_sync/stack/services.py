"""The command line, environment and ports of each service the stack runs, in start order."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from matrix_sync.stack.install import Tools
from matrix_sync.stack.ports import HOST, StackPorts
from shared.topology import FUNCTIONS, GCS_NOTIFICATIONS_TOPIC

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_SERVERS = tuple(name for name in FUNCTIONS if name != "extractor")  # the extractor runs on-prem
SERVICE_NAMES = ("pubsub", "gcs", "bigquery", *FUNCTION_SERVERS)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: list[str]
    env: dict[str, str]
    ports: dict[str, int]   # StackPorts field -> port; the first is the service's main port
    ready_timeout: float
    cwd: Path | None = None

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))


def service_specs(tools: Tools, ports: StackPorts, root: Path, project: str, stack_env: dict[str, str]) -> list[ServiceSpec]:
    base = dict(os.environ)
    return [
        ServiceSpec(
            name="pubsub",
            command=[str(tools.pubsub_emulator), f"--host={HOST}", f"--port={ports.pubsub}"],
            env=base,
            ports={"pubsub": ports.pubsub},
            ready_timeout=60,
        ),
        ServiceSpec(
            name="gcs",
            command=[
                str(tools.fake_gcs_server),
                "-scheme", "http", "-host", HOST, "-port", str(ports.gcs),
                "-backend", "filesystem", "-filesystem-root", str(root / "gcs"),
                "-external-url", f"http://{HOST}:{ports.gcs}",
                "-event.pubsub-project-id", project,
                "-event.pubsub-topic", GCS_NOTIFICATIONS_TOPIC,
                "-event.list", "finalize",
            ],
            env={**base, "PUBSUB_EMULATOR_HOST": stack_env["PUBSUB_EMULATOR_HOST"]},
            ports={"gcs": ports.gcs},
            ready_timeout=30,
        ),
        ServiceSpec(
            name="bigquery",
            command=[
                str(tools.bqemulator), "start",
                "--rest-port", str(ports.bigquery), "--grpc-port", str(ports.bigquery_grpc),
                "--persistent", "--data-dir", str(root / "bigquery"), "--project", project,
            ],
            # gs://bucket/object in load jobs is read from fake-gcs-server's files
            env={**base, "BQEMU_GCS_LOCAL_ROOT": str(root / "gcs"), "PYTHONUNBUFFERED": "1"},
            ports={"bigquery": ports.bigquery, "bigquery_grpc": ports.bigquery_grpc},
            ready_timeout=60,
        ),
        *(_function_server(tools, ports, name, base, stack_env) for name in FUNCTION_SERVERS),
    ]


def _function_server(tools: Tools, ports: StackPorts, name: str, base: dict[str, str], stack_env: dict[str, str]) -> ServiceSpec:
    entry_point, _trigger = FUNCTIONS[name]
    port = getattr(ports, name)
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), base.get("PYTHONPATH")]))
    return ServiceSpec(
        name=name,
        command=[
            str(tools.functions_framework),
            "--source", str(REPO_ROOT / "functions" / name / "main.py"),
            "--target", entry_point,
            "--signature-type", "cloudevent",
            "--host", HOST, "--port", str(port),
        ],
        env={**base, **stack_env, "MATRIX_LOG_FORMAT": "json", "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
        ports={name: port},
        ready_timeout=60,
        cwd=REPO_ROOT,
    )
