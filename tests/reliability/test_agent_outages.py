"""The on-prem agent is a daemon: a Pub/Sub outage is waited out, a pull that times out on an idle
subscription is no error, and a request it works on for longer than the ack deadline is not handed
to anyone else meanwhile. Against the reliability stack's Pub/Sub emulator, killed, frozen and restarted."""
from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from matrix_sync import agent
from shared.clients import publisher, subscriber
from shared.config import Config
from shared.extractor.run import Extraction
from shared.extractor.source import SourceError
from shared.topology import EXTRACT_REQUESTS_TOPIC, EXTRACTOR_PULL_SUBSCRIPTION
from tests.reliability.harness import FaultStack, create_table
from tests.support import ensure_resources, write_config

pytestmark = [pytest.mark.stack]


class RunningAgent:
    """`agent.serve` in a thread, as `matrix-sync agent --idle-timeout` runs it."""

    def __init__(self, config: Config, idle_timeout_s: float, *, once: bool = False) -> None:
        self.outcomes: list[Extraction] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, args=(config, idle_timeout_s, once), daemon=True)

    def _serve(self, config: Config, idle_timeout_s: float, once: bool) -> None:
        try:
            agent.serve(config, once=once, idle_timeout_s=idle_timeout_s, on_results=self.outcomes.append)
        except BaseException as error:  # noqa: BLE001 - what the command would have died of
            self.error = error

    def start(self) -> RunningAgent:
        self._thread.start()
        return self

    def wait_for_outcome(self, timeout_s: float) -> Extraction:
        deadline = time.monotonic() + timeout_s
        while not self.outcomes and self.error is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.error is None, f"the agent died: {self.error!r}"
        assert self.outcomes, "the request was not handled"
        return self.outcomes[0]

    def join(self, timeout_s: float) -> None:
        assert self.ended(timeout_s) is None, f"the agent died: {self.error!r}"

    def ended(self, timeout_s: float) -> BaseException | None:
        """What `serve` raised (None: it returned), once it has ended."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the agent did not end after its idle timeout"
        return self.error


@pytest.fixture
def config(fault_stack: FaultStack, tmp_path: Path, unique_name: str) -> Config:
    database = tmp_path / "matrix.db"
    create_table(database, "items")
    made = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"items": ["id"]},
                        suffix=unique_name)
    ensure_resources(fault_stack.stack, made)
    # the stack creates the agent's subscription too; these tests watch the agent create it (its
    # appearance says the agent is serving) and set its deadline themselves
    subscriber().delete_subscription(
        subscription=subscriber().subscription_path(made.pubsub.project, EXTRACTOR_PULL_SUBSCRIPTION))
    return made


@pytest.fixture
def quick_agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(agent, "PULL_RETRY_S", 2.0)
    monkeypatch.setattr(agent, "PULL_TIMEOUT_S", 2.0)
    monkeypatch.setattr(agent, "OUTAGE_WAIT_S", (0.5, 1.0))
    yield


def _subscription_exists(config: Config) -> bool:
    path = subscriber().subscription_path(config.pubsub.project, EXTRACTOR_PULL_SUBSCRIPTION)
    try:
        subscriber().get_subscription(subscription=path)
    except Exception:  # noqa: BLE001 - not yet created, or Pub/Sub down
        return False
    return True


def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_a_pubsub_outage_is_waited_out_and_the_next_request_handled(
    fault_stack: FaultStack, config: Config, quick_agent: None, caplog: pytest.LogCaptureFixture
) -> None:
    running = RunningAgent(config, idle_timeout_s=20).start()
    _until(lambda: _subscription_exists(config))
    fault_stack.stack.kill("pubsub")
    time.sleep(6)  # several pulls fail, each after its own retries
    fault_stack.restart("pubsub")  # an emulator keeps nothing: the agent's subscription is gone too
    _until(lambda: _subscription_exists(config))
    agent.request_extract(config, [])

    outcome = running.wait_for_outcome(timeout_s=60)

    assert [r.table for r in outcome.written] == ["items"] and not outcome.failed
    messages = [r.getMessage() for r in caplog.records if r.name == agent.__name__]
    assert any(m.startswith("Pub/Sub cannot be reached") for m in messages), messages
    assert any(m.startswith("Pub/Sub reached again after") for m in messages), messages
    running.join(timeout_s=60)


def test_a_pull_that_times_out_is_an_idle_subscription_not_an_error(
    fault_stack: FaultStack, config: Config, quick_agent: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Pub/Sub answers a pull that found nothing in time with DEADLINE_EXCEEDED; a frozen emulator
    gives the same answer."""
    running = RunningAgent(config, idle_timeout_s=20).start()
    _until(lambda: _subscription_exists(config))
    fault_stack.stack.freeze("pubsub")
    try:
        time.sleep(12)  # past the 10 s the agent used to give a pull
    finally:
        fault_stack.stack.freeze("pubsub", frozen=False)
    agent.request_extract(config, ["items"])

    outcome = running.wait_for_outcome(timeout_s=60)

    assert [r.table for r in outcome.written] == ["items"]
    assert not [r for r in caplog.records if r.name == agent.__name__ and "cannot be reached" in r.getMessage()]
    running.join(timeout_s=60)


def test_a_request_held_past_its_ack_deadline_is_not_delivered_again(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscription's deadline is 10 s and the request takes 25 s: another puller (a second
    agent) is given nothing meanwhile, and the request is gone once the agent is done."""
    project = config.pubsub.project
    path = subscriber().subscription_path(project, EXTRACTOR_PULL_SUBSCRIPTION)
    subscriber().create_subscription(name=path, topic=publisher().topic_path(project, EXTRACT_REQUESTS_TOPIC),
                                     ack_deadline_seconds=10)
    monkeypatch.setattr(agent, "ACK_EXTENSION_S", 10)
    monkeypatch.setattr(agent, "ACK_RENEW_EVERY_S", 3)
    real_run_request = agent.run_request
    held = threading.Event()

    def slow_run_request(*args: object, **kwargs: object) -> Extraction:
        held.set()
        time.sleep(25)
        return real_run_request(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(agent, "run_request", slow_run_request)
    agent.request_extract(config, ["items"])
    running = RunningAgent(config, idle_timeout_s=5, once=True).start()
    assert held.wait(30), "the agent did not take the request"

    redelivered = []
    deadline = time.monotonic() + 30
    while not running.outcomes and time.monotonic() < deadline:
        response = subscriber().pull(subscription=path, max_messages=1, timeout=5)
        redelivered += [m.message.message_id for m in response.received_messages]
        time.sleep(1)
    outcome = running.wait_for_outcome(timeout_s=30)
    running.join(timeout_s=30)

    assert redelivered == []
    assert [r.table for r in outcome.written] == ["items"]
    assert not subscriber().pull(subscription=path, max_messages=1, timeout=5).received_messages


def _source_away(config: Config) -> tuple[Path, Path]:
    """The SQLite source moved aside, as unreachable as a SQL Server restarting; (where, where it went)."""
    database = Path(config.source.url.removeprefix("sqlite:///"))
    away = database.with_name(database.name + ".away")
    database.rename(away)
    return database, away


def _logged_errors(log_stream: io.StringIO, text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    return [line for line in lines if line["severity"] == "ERROR" and text in str(line["message"])]


def test_a_source_that_cannot_be_reached_is_logged_and_its_request_delivered_again(
    config: Config, quick_agent: None, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    """A SQL Server restart must not end the daemon: the request goes back to Pub/Sub and is
    extracted once the source is back."""
    monkeypatch.setattr(agent, "SOURCE_RETRY_S", 2)
    database, away = _source_away(config)
    agent.ensure_subscription(config)
    agent.request_extract(config, ["items"])
    running = RunningAgent(config, idle_timeout_s=20).start()
    _until(lambda: bool(_logged_errors(log_stream, "left for another delivery")) or running.error is not None)

    (logged,) = _logged_errors(log_stream, "left for another delivery")
    assert "cannot connect to source" in str(logged["message"]) and "does not exist" in str(logged["message"])
    assert logged["logging.googleapis.com/labels"]["stage"] == "agent"  # type: ignore[index]
    away.rename(database)
    outcome = running.wait_for_outcome(timeout_s=60)

    assert [r.table for r in outcome.written] == ["items"]
    running.join(timeout_s=60)


def test_with_once_an_unreachable_source_ends_the_agent_with_its_error_and_the_request_kept(
    config: Config, quick_agent: None, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    monkeypatch.setattr(agent, "SOURCE_RETRY_S", 2)
    _source_away(config)
    agent.ensure_subscription(config)
    agent.request_extract(config, ["items"])

    error = RunningAgent(config, idle_timeout_s=20, once=True).start().ended(timeout_s=60)

    assert isinstance(error, SourceError) and str(error).startswith("cannot connect to source")
    assert _logged_errors(log_stream, "left for another delivery")
    path = subscriber().subscription_path(config.pubsub.project, EXTRACTOR_PULL_SUBSCRIPTION)
    assert len(_pulled_within(path, timeout_s=30)) == 1, "the request was acknowledged, not handed back"


def _pulled_within(path: str, timeout_s: float) -> list[object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        received = subscriber().pull(subscription=path, max_messages=1, timeout=5).received_messages
        if received:
            return list(received)
        time.sleep(0.5)
    return []
