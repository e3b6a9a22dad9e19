"""LocalStack: starts, inspects and stops the emulators and function servers of one stack root."""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from google.api_core.exceptions import GoogleAPICallError, RetryError

from matrix_sync.stack import bootstrap
from matrix_sync.stack.errors import StackError
from matrix_sync.stack.install import find_tools, install_duckdb_spatial
from matrix_sync.stack.ports import HOST, StackPorts, env_variable, port_free
from matrix_sync.stack.processes import identity, is_same_process, kill_now, spawn, stop_all, suspend, wait_ready
from matrix_sync.stack.services import FUNCTION_SERVERS, SERVICE_NAMES, ServiceSpec, service_specs
from matrix_sync.stack.state import ServiceRecord, StackState, load_state, remove_state, save_state

DEFAULT_ROOT = Path(".matrix-sync/stack")
DEFAULT_PROJECT = "local-dev"
DEFAULT_BUCKET = "matrix-snapshots"
DEFAULT_DATASET = "matrix"
# Services that must answer before the Google clients can be used.
EMULATORS = ("pubsub", "gcs", "bigquery")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None     # None when not running
    port: int
    running: bool
    log: Path


class LocalStack:
    """The local emulators (Pub/Sub, GCS, BigQuery) and function servers, all state under `root`.

    While a stack runs from `root`, its recorded ports and project win over the ones passed here,
    so any process pointing at the same root talks to the same stack."""

    def __init__(self, root: Path = DEFAULT_ROOT, ports: StackPorts | None = None, project: str = DEFAULT_PROJECT) -> None:
        self.root = Path(root).absolute()
        self._requested_ports = ports if ports is not None else StackPorts.from_env()
        self._requested_project = project

    # --- where things live -------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def log_path(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    @property
    def ports(self) -> StackPorts:
        """Ports of the running stack, else the ones it would start on."""
        return self._effective()[0]

    @property
    def project(self) -> str:
        """Project of the running stack, else the one it would start with."""
        return self._effective()[1]

    # --- public API ---------------------------------------------------------------------------

    def install(self) -> None:
        """Check java, the Pub/Sub emulator, fake-gcs-server and bqemulator are there, and install
        DuckDB's spatial extension from its wheel (bqemulator cannot start without it). Idempotent."""
        find_tools()
        install_duckdb_spatial()

    def up(self, progress: Callable[[str], None] | None = None) -> None:
        """Start whatever is not running, then create the default resources. Idempotent."""
        say = progress or (lambda _message: None)
        tools = find_tools()
        install_duckdb_spatial()
        with self._lock():
            state = self._running_state() or StackState(self._requested_project, self._requested_ports.as_dict())
            ports = StackPorts(**state.ports)
            env = self._env_for(ports, state.project)
            specs = service_specs(tools, ports, self.root, state.project, env)
            state.services = {
                name: record for name, record in state.services.items()
                if name in SERVICE_NAMES and _is_running(record)
            }
            for spec in specs:
                if spec.name in state.services:
                    say(f"{spec.name}: running (pid {state.services[spec.name].pid}, port {spec.port})")
            missing = [spec for spec in specs if spec.name not in state.services]
            _check_ports_free(missing, reused=len(missing) < len(specs))
            for directory in ("logs", "gcs", "bigquery"):
                (self.root / directory).mkdir(parents=True, exist_ok=True)
            self._start(missing, state, say)
            say("bootstrap: topics, subscriptions, bucket and datasets")
            self._bootstrap(ports, state.project, state.resources)

    def down(self) -> list[str]:
        """Stop exactly the processes this root's stack started (never a reused pid); their names."""
        with self._lock():
            state = load_state(self.state_path)
            if state is None:
                remove_state(self.state_path)
                return []
            ours = [record for record in reversed(list(state.services.values())) if _is_running(record)]
            stop_all([record.pid for record in ours])
            remove_state(self.state_path)
            return [record.name for record in ours]

    def status(self) -> list[ServiceStatus]:
        """Each service of the stack, running or not."""
        state = load_state(self.state_path)
        ports = StackPorts(**state.ports) if state else self._requested_ports
        statuses = []
        for name in SERVICE_NAMES:
            record = state.services.get(name) if state else None
            running = record is not None and _is_running(record)
            statuses.append(
                ServiceStatus(
                    name=name,
                    pid=record.pid if record and running else None,
                    port=record.port if record else getattr(ports, name),
                    running=running,
                    log=self.log_path(name),
                )
            )
        return statuses

    def env(self) -> dict[str, str]:
        """Variables that point Google's clients (and shared.clients) at this stack."""
        return self._env_for(*self._effective())

    def ensure_resources(self, *, bucket: str, bigquery_project: str, dataset: str, pubsub_project: str) -> None:
        """Create, if missing, the bucket, the dataset and its staging dataset, and in `pubsub_project`
        the topics and subscriptions of the table-loaded consumers. Idempotent."""
        stopped = [status.name for status in self.status() if status.name in EMULATORS and not status.running]
        if stopped:
            raise StackError(f"the local stack is not running ({', '.join(stopped)} down); start it with `matrix-sync stack up`")
        try:
            bootstrap.ensure_resources(
                self._endpoints(self._effective()[0]), bucket=bucket, bigquery_project=bigquery_project,
                dataset=dataset, pubsub_project=pubsub_project,
            )
        except (GoogleAPICallError, RetryError) as error:
            raise StackError(f"creating local resources failed: {_one_line(error)}; see the logs under {self.root / 'logs'}") from None
        self._remember({"bucket": bucket, "bigquery_project": bigquery_project, "dataset": dataset,
                        "pubsub_project": pubsub_project})

    # --- faults: one service crashed, restarted or stalled, as the fault tests need ------------

    def kill(self, service: str) -> None:
        """SIGKILL one service's process group, as a crash would; `restart` (or `up`) brings it back."""
        kill_now(self._live_record(service).pid)

    def freeze(self, service: str, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) one service: connections open but nothing answers, like a stalled network."""
        suspend(self._live_record(service).pid, frozen)

    def restart(self, service: str, env: Mapping[str, str] | None = None) -> None:
        """Start one service again on the same port, killing it first if it runs. `env` is added to its
        environment (a PYTHONPATH there is prepended). A restarted Pub/Sub emulator keeps nothing, so every
        topic and subscription of this stack (defaults and each `ensure_resources`) is created again."""
        if service not in SERVICE_NAMES:
            raise StackError(f"unknown service {service!r}; one of {', '.join(SERVICE_NAMES)}")
        tools = find_tools()
        with self._lock():
            state = self._running_state()
            if state is None:
                raise StackError("the local stack is not running; start it with `matrix-sync stack up`")
            record = state.services.pop(service, None)
            if record is not None and _is_running(record):
                kill_now(record.pid)
            ports = StackPorts(**state.ports)
            specs = service_specs(tools, ports, self.root, state.project, self._env_for(ports, state.project))
            spec = next(spec for spec in specs if spec.name == service)
            spec = replace(spec, env=_with_overrides(spec.env, env or {}))
            _wait_ports_free(spec)
            self._start([spec], state, lambda _message: None)
            if service == "pubsub":
                self._bootstrap(ports, state.project, state.resources)

    # --- internals ----------------------------------------------------------------------------

    def _start(self, missing: list[ServiceSpec], state: StackState, say: Callable[[str], None]) -> None:
        """Start the missing services: all but fake-gcs-server at once (none depends on another),
        fake-gcs-server once Pub/Sub has its notification topic; wait for each in order."""
        if not missing:
            return
        pids: dict[str, int] = {}
        started_at: dict[str, float] = {}
        endpoints = self._endpoints(StackPorts(**state.ports))

        def launch(spec: ServiceSpec) -> None:
            say(f"{spec.name}: starting on port {spec.port}")
            started_at[spec.name] = time.monotonic()
            pids[spec.name] = spawn(spec.command, self.log_path(spec.name), spec.env, spec.cwd)

        try:
            for spec in missing:
                if spec.name != "gcs":
                    launch(spec)
            for spec in missing:
                if spec.name == "gcs":
                    bootstrap.ensure_notifications_topic(endpoints, state.project)
                    launch(spec)
                wait_ready(spec.name, pids[spec.name], list(spec.ports.values()), self.log_path(spec.name), spec.ready_timeout)
                state.services[spec.name] = self._record(spec, pids[spec.name])
                save_state(self.state_path, state)
                say(f"{spec.name}: ready (pid {pids[spec.name]}, {time.monotonic() - started_at[spec.name]:.1f} s)")
        except BaseException as error:
            # leave nothing half-started behind: stop what this call started, keep the rest recorded
            stop_all(list(pids.values()))
            for name in pids:
                state.services.pop(name, None)
            save_state(self.state_path, state)
            if isinstance(error, (GoogleAPICallError, RetryError)):
                raise StackError(f"Pub/Sub emulator did not accept the notification topic: {_one_line(error)}; see {self.log_path('pubsub')}") from None
            raise

    def _record(self, spec: ServiceSpec, pid: int) -> ServiceRecord:
        current = identity(pid)
        if current is None:
            raise StackError(f"{spec.name} exited right after start; see {self.log_path(spec.name)}")
        return ServiceRecord(
            name=spec.name, pid=pid, port=spec.port, cmdline=current.cmdline, proc_start=current.proc_start,
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), log=str(self.log_path(spec.name)),
        )

    def _bootstrap(self, ports: StackPorts, project: str, resources: list[dict[str, str]]) -> None:
        endpoints = self._endpoints(ports)
        try:
            bootstrap.ensure_loader_wiring(endpoints, project)
            bootstrap.ensure_resources(
                endpoints, bucket=DEFAULT_BUCKET, bigquery_project=project, dataset=DEFAULT_DATASET, pubsub_project=project
            )
            for entry in resources:
                bootstrap.ensure_resources(endpoints, **entry)
        except (GoogleAPICallError, RetryError) as error:
            raise StackError(f"bootstrap of the local stack failed: {_one_line(error)}; see the logs under {self.root / 'logs'}") from None

    def _remember(self, resources: dict[str, str]) -> None:
        with self._lock():
            state = load_state(self.state_path)
            if state is not None and resources not in state.resources:
                state.resources.append(resources)
                save_state(self.state_path, state)

    def _live_record(self, service: str) -> ServiceRecord:
        state = self._running_state()
        record = state.services.get(service) if state else None
        if record is None or not _is_running(record):
            raise StackError(f"{service} is not running in the stack at {self.root}")
        return record

    def _effective(self) -> tuple[StackPorts, str]:
        state = self._running_state()
        return (StackPorts(**state.ports), state.project) if state else (self._requested_ports, self._requested_project)

    def _running_state(self) -> StackState | None:
        """The recorded state if at least one of its processes still runs."""
        state = load_state(self.state_path)
        if state is None or not any(_is_running(record) for record in state.services.values()):
            return None
        return state

    @staticmethod
    def _env_for(ports: StackPorts, project: str) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": f"http://{HOST}:{ports.gcs}",
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{ports.pubsub}",
            "BIGQUERY_EMULATOR_HOST": f"http://{HOST}:{ports.bigquery}",
            "CLOUDSDK_CORE_PROJECT": project,
            "GOOGLE_CLOUD_PROJECT": project,
        }

    @staticmethod
    def _endpoints(ports: StackPorts) -> bootstrap.Endpoints:
        return bootstrap.Endpoints(
            pubsub=f"{HOST}:{ports.pubsub}",
            storage=f"http://{HOST}:{ports.gcs}",
            bigquery=f"http://{HOST}:{ports.bigquery}",
            functions={name: f"http://{HOST}:{getattr(ports, name)}/" for name in FUNCTION_SERVERS},
        )

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down of one root across processes (two shells, CLI and tests)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _is_running(record: ServiceRecord) -> bool:
    return is_same_process(record.pid, record.cmdline, record.proc_start)


def _check_ports_free(specs: list[ServiceSpec], *, reused: bool) -> None:
    seen: dict[int, str] = {}
    for spec in specs:
        for field, port in spec.ports.items():
            if port in seen:
                raise StackError(f"port {port} is configured for both {seen[port]} and {field}; set {env_variable(field)} to another port")
            seen[port] = field
            if not port_free(port):
                hint = " (after `matrix-sync stack down`, since a running stack keeps its ports)" if reused else ""
                raise StackError(f"port {port} ({field}) is in use by another process; stop it or set {env_variable(field)}{hint}")


def _wait_ports_free(spec: ServiceSpec, timeout: float = 15.0) -> None:
    """A killed server's port can stay taken for a moment while the kernel tears its sockets down."""
    deadline = time.monotonic() + timeout
    while not all(port_free(port) for port in spec.ports.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    _check_ports_free([spec], reused=True)


def _with_overrides(base: dict[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    merged = {**base, **extra}
    if extra.get("PYTHONPATH") and base.get("PYTHONPATH"):
        merged["PYTHONPATH"] = os.pathsep.join([extra["PYTHONPATH"], base["PYTHONPATH"]])
    return merged


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300]
