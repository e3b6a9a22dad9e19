"""The local stack manager, against real processes: emulators, function servers, Google's clients."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from google.cloud import bigquery

from matrix_sync.stack import LocalStack, StackError, StackPorts
from matrix_sync.stack import local as local_module
from matrix_sync.stack.ports import port_answers
from matrix_sync.stack.processes import alive, spawn, stop_all, wait_ready
from shared import clients
from shared.topology import (
    ALERTS_TOPIC,
    GCS_NOTIFICATIONS_TOPIC,
    STAGING_DATASET_SUFFIX,
    TABLE_LOADED_TOPIC,
    dead_letter_topic,
    subscription_name,
)

pytestmark = pytest.mark.stack

PROJECT = "stack-test"
SERVICES = ["pubsub", "gcs", "bigquery", "loader", "reconciler", "validator"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(root=tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), project=PROJECT)
    started = time.monotonic()
    try:
        local.up()
        print(f"cold up: {time.monotonic() - started:.1f} s")
        yield local
    finally:
        pids = [status.pid for status in local.status() if status.pid]
        local.down()
        assert not [pid for pid in pids if alive(pid)], "processes left running after down()"


@pytest.fixture
def stack_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The stack's variables in os.environ, as a user gets from `eval $(matrix-sync stack env)`."""
    env = stack.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clients.reset_clients()
    yield env
    clients.reset_clients()


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_grows(path: Path, since: int) -> Callable[[], bool]:
    """The function servers log nothing at start and something for every event (whatever their
    handlers make of it), so new log output means an event arrived."""
    return lambda: log_size(path) > since


# --- without the stack ---------------------------------------------------------------------------


def test_ports_from_env_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_STACK_PUBSUB_PORT", "18085")
    monkeypatch.setenv("MATRIX_STACK_BIGQUERY_GRPC_PORT", "19060")
    ports = StackPorts.from_env()
    assert (ports.pubsub, ports.bigquery_grpc, ports.gcs) == (18085, 19060, 4443)
    for bad in ("four", "70000", "0"):
        monkeypatch.setenv("MATRIX_STACK_GCS_PORT", bad)
        with pytest.raises(StackError, match=f"MATRIX_STACK_GCS_PORT='{bad}' is not a port number"):
            StackPorts.from_env()


def test_free_ports_are_distinct() -> None:
    ports = list(StackPorts.free().as_dict().values())
    assert len(set(ports)) == len(ports)


def test_service_dying_at_start_reports_its_last_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "broken.log"
    pid = spawn([sys.executable, "-c", "import sys; print('line one'); sys.exit('fatal: no config')"], log, dict(os.environ))
    with pytest.raises(StackError, match="broken exited during start.*fatal: no config"):
        wait_ready("broken", pid, [StackPorts.free().pubsub], log, timeout=20)


def test_down_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        record = {"name": "pubsub", "pid": stranger.pid, "port": 1, "cmdline": ["java", "-jar", "emulator.jar"],
                  "proc_start": 0, "started_at": "", "log": ""}
        (tmp_path / "state.json").write_text(json.dumps(
            {"version": 1, "project": "p", "ports": StackPorts().as_dict(), "services": {"pubsub": record}}
        ))
        assert LocalStack(root=tmp_path).down() == []
        assert stranger.poll() is None
        assert not (tmp_path / "state.json").exists()
        assert LocalStack(root=tmp_path).down() == []
    finally:
        stop_all([stranger.pid])
        stranger.wait()


def test_install_is_idempotent_and_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    LocalStack(root=tmp_path).install()
    LocalStack(root=tmp_path).install()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="java not found.*install"):
        LocalStack(root=tmp_path).install()


def test_a_service_dying_at_start_stops_what_up_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_specs = local_module.service_specs

    def broken_bigquery(*args: object, **kwargs: object) -> list[local_module.ServiceSpec]:
        crash = [sys.executable, "-c", "import sys; sys.exit('cannot open the data dir')"]
        return [replace(spec, command=crash) if spec.name == "bigquery" else spec for spec in real_specs(*args, **kwargs)]

    monkeypatch.setattr(local_module, "service_specs", broken_bigquery)
    ports = StackPorts.free()
    broken = LocalStack(root=tmp_path, ports=ports)
    with pytest.raises(StackError, match="bigquery exited during start; last log lines: .*cannot open the data dir"):
        broken.up()
    assert not any(status.running for status in broken.status())
    assert not [port for port in ports.as_dict().values() if port_answers(port)]


# --- one real stack for the rest of the file -----------------------------------------------------


def test_up_starts_every_service(stack: LocalStack) -> None:
    statuses = {status.name: status for status in stack.status()}
    assert list(statuses) == SERVICES
    assert all(status.running and status.pid for status in statuses.values()), statuses
    assert statuses["pubsub"].port == stack.ports.pubsub
    assert statuses["reconciler"].port == stack.ports.reconciler
    state = json.loads((stack.root / "state.json").read_text())
    assert set(state["services"]) == set(SERVICES)
    assert state["ports"] == stack.ports.as_dict()
    assert all(statuses[name].log == stack.root / "logs" / f"{name}.log" for name in SERVICES)


def test_env_points_the_clients_at_the_stack(stack: LocalStack) -> None:
    ports = stack.ports
    assert stack.env() == {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{ports.gcs}",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{ports.pubsub}",
        "BIGQUERY_EMULATOR_HOST": f"http://127.0.0.1:{ports.bigquery}",
        "CLOUDSDK_CORE_PROJECT": PROJECT,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
    }


def test_upload_notifies_pubsub_and_the_loader(stack: LocalStack, stack_env: dict[str, str]) -> None:
    subscriber = clients.subscriber()
    subscription = subscriber.subscription_path(PROJECT, f"test-notifications-{uuid.uuid4().hex[:8]}")
    subscriber.create_subscription(name=subscription, topic=subscriber.topic_path(PROJECT, GCS_NOTIFICATIONS_TOPIC))
    loader_log = log_size(stack.log_path("loader"))
    storage = clients.storage_client(PROJECT)
    bucket = storage.create_bucket(f"uploads-{uuid.uuid4().hex[:8]}")
    bucket.blob("snapshots/t/run-1/_manifest.json").upload_from_string(b'{"hello": 1}')

    def finalize_event() -> dict[str, str] | None:
        for received in subscriber.pull(subscription=subscription, max_messages=10, timeout=5).received_messages:
            if received.message.attributes.get("bucketId") == bucket.name:
                return dict(received.message.attributes)
        return None

    attributes = wait_for(finalize_event, what="OBJECT_FINALIZE notification")
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["objectId"] == "snapshots/t/run-1/_manifest.json"
    assert attributes["payloadFormat"] == "JSON_API_V1"
    # fake-gcs-server's files are where bqemulator reads gs:// URIs
    assert (stack.root / "gcs" / bucket.name / "snapshots/t/run-1/_manifest.json").read_bytes() == b'{"hello": 1}'
    # the loader's push subscription delivered the same event to the loader server
    wait_for(log_grows(stack.log_path("loader"), loader_log), what="the loader to receive the notification")


def test_bigquery_tables_queries_and_gcs_loads(stack: LocalStack, stack_env: dict[str, str]) -> None:
    bq = clients.bigquery_client(PROJECT)
    table = bigquery.Table(f"{PROJECT}.matrix.people", schema=[
        bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("name", "STRING"),
    ])
    bq.create_table(table, exists_ok=True)
    bq.query(f"INSERT INTO `{PROJECT}.matrix.people` (id, name) VALUES (1, 'ada')").result()
    # a load job reading gs:// through fake-gcs-server's filesystem backend
    clients.storage_client(PROJECT).bucket("matrix-snapshots").blob("loads/people.json").upload_from_string(
        b'{"id": 2, "name": "grace"}\n'
    )
    job_config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON)
    bq.load_table_from_uri("gs://matrix-snapshots/loads/people.json", f"{PROJECT}.matrix.people", job_config=job_config).result()
    rows = bq.query(f"SELECT id, name FROM `{PROJECT}.matrix.people` ORDER BY id").result()
    assert [(row.id, row.name) for row in rows] == [(1, "ada"), (2, "grace")]
    assert bq.get_dataset(f"{PROJECT}.matrix{STAGING_DATASET_SUFFIX}")


def test_up_again_is_idempotent_and_keeps_the_running_ports(stack: LocalStack) -> None:
    before = {status.name: status.pid for status in stack.status()}
    messages: list[str] = []
    again = LocalStack(root=stack.root, ports=StackPorts.free(), project="ignored-while-running")
    started = time.monotonic()
    again.up(progress=messages.append)
    elapsed = time.monotonic() - started
    print(f"warm up: {elapsed:.2f} s")
    assert {status.name: status.pid for status in again.status()} == before
    assert again.ports == stack.ports and again.env() == stack.env()
    assert any("running" in message for message in messages)
    assert elapsed < 10


def test_ensure_resources_for_a_new_project(stack: LocalStack, stack_env: dict[str, str]) -> None:
    for _ in range(2):  # idempotent
        stack.ensure_resources(bucket="other-bucket", bigquery_project="other-bq", dataset="other_ds", pubsub_project="other-ps")
    assert clients.storage_client("other-bq").lookup_bucket("other-bucket") is not None
    bq = clients.bigquery_client("other-bq")
    assert bq.get_dataset("other-bq.other_ds") and bq.get_dataset(f"other-bq.other_ds{STAGING_DATASET_SUFFIX}")
    subscriber = clients.subscriber()
    push = subscriber.get_subscription(subscription=subscriber.subscription_path("other-ps", subscription_name("reconciler")))
    assert push.topic == subscriber.topic_path("other-ps", TABLE_LOADED_TOPIC)
    assert push.push_config.push_endpoint == f"http://127.0.0.1:{stack.ports.reconciler}/"
    assert push.ack_deadline_seconds == 600
    assert push.dead_letter_policy.dead_letter_topic == subscriber.topic_path("other-ps", dead_letter_topic("reconciler"))
    assert push.dead_letter_policy.max_delivery_attempts == 5
    dead_letters = subscriber.get_subscription(
        subscription=subscriber.subscription_path("other-ps", f"{dead_letter_topic('validator')}-sub")
    )
    assert dead_letters.topic == subscriber.topic_path("other-ps", dead_letter_topic("validator"))
    alerts = subscriber.get_subscription(subscription=subscriber.subscription_path("other-ps", "alerts-sub"))
    assert alerts.topic == subscriber.topic_path("other-ps", ALERTS_TOPIC)


def test_up_restarts_only_dead_services(stack: LocalStack) -> None:
    before = {status.name: status.pid for status in stack.status()}
    os.killpg(before["validator"], signal.SIGKILL)
    wait_for(lambda: not alive(before["validator"]), what="validator to die")
    assert [status.name for status in stack.status() if not status.running] == ["validator"]
    stack.up()
    after = {status.name: status.pid for status in stack.status()}
    assert after["validator"] != before["validator"]
    assert {name: pid for name, pid in after.items() if name != "validator"} == {
        name: pid for name, pid in before.items() if name != "validator"
    }
    assert all(status.running for status in stack.status())


def test_table_loaded_is_pushed_to_the_function_servers(stack: LocalStack, stack_env: dict[str, str]) -> None:
    publisher = clients.publisher()
    for project in (PROJECT, "other-ps"):  # the stack's project and one made by ensure_resources
        logs = {function: log_size(stack.log_path(function)) for function in ("reconciler", "validator")}
        body = json.dumps({"table": "dbo.people", "run_id": "run-1"}).encode()
        publisher.publish(publisher.topic_path(project, TABLE_LOADED_TOPIC), body, table="dbo.people").result(timeout=10)
        for function, since in logs.items():
            wait_for(log_grows(stack.log_path(function), since), what=f"{function} to receive table-loaded in {project}")


def test_port_in_use_is_a_stack_error(stack: LocalStack, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        ports = StackPorts.free()
        blocked = LocalStack(root=tmp_path / "blocked", ports=StackPorts(**{**ports.as_dict(), "pubsub": port}))
        with pytest.raises(StackError) as error:
            blocked.up()
        assert str(error.value) == (
            f"port {port} (pubsub) is in use by another process; stop it or set MATRIX_STACK_PUBSUB_PORT"
        )
        assert not any(status.running for status in blocked.status())
    # another root on the running stack's ports: ours, but not that root's
    clash = LocalStack(root=tmp_path / "clash", ports=stack.ports)
    with pytest.raises(StackError, match=r"port \d+ \(pubsub\) is in use"):
        clash.up()


def test_down_stops_exactly_its_processes(stack: LocalStack) -> None:
    pids = {status.name: status.pid for status in stack.status()}
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert sorted(stack.down()) == sorted(SERVICES)
        assert not [name for name, pid in pids.items() if pid and alive(pid)]
        assert bystander.poll() is None
        assert not (stack.root / "state.json").exists()
        assert not any(status.running for status in stack.status())
        assert stack.down() == []
    finally:
        stop_all([bystander.pid])
        bystander.wait()


def test_a_stack_partly_down_is_an_error_not_google_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one function server stopped, commands took the stack for absent and targeted Google
    Cloud: with credentials at hand, a local config's deletes would have gone to real projects."""
    from matrix_sync.environment import STACK_DIR_VARIABLE, running_stack
    from matrix_sync.stack.processes import identity
    from matrix_sync.stack.services import SERVICE_NAMES
    from matrix_sync.stack.state import ServiceRecord, StackState, save_state

    service = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands in for every service
    try:
        running = identity(service.pid)
        assert running is not None

        def state(stopped: set[str]) -> StackState:
            records = {name: ServiceRecord(name, _dead_pid() if name in stopped else service.pid, 1, running.cmdline,
                                           running.proc_start, "", "") for name in SERVICE_NAMES}
            return StackState(project="p", ports=StackPorts().as_dict(), services=records)

        for name, stopped in (("whole", set()), ("partly", {"validator"}), ("down", set(SERVICE_NAMES))):
            save_state(LocalStack(root=tmp_path / name).state_path, state(stopped))
        monkeypatch.setenv(STACK_DIR_VARIABLE, str(tmp_path / "whole"))
        assert running_stack() is not None
        monkeypatch.setenv(STACK_DIR_VARIABLE, str(tmp_path / "partly"))
        with pytest.raises(StackError, match=r"is partly down \(validator stopped\): `matrix-sync stack up`"):
            running_stack()
        for root in ("down", "never-started"):
            monkeypatch.setenv(STACK_DIR_VARIABLE, str(tmp_path / root))
            assert running_stack() is None
    finally:
        stop_all([service.pid])
        service.wait()


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)
