"""The load test: tables of every key shape synced concurrently for several cycles, every one reconciled
each cycle and every snapshot applied exactly once; each run in resources of its own, removed after;
memory measured over each service's process tree while the cycles run; early stops told."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.exceptions import NotFound

from matrix_sync import loadtest, loadtest_process
from matrix_sync.cycle import TableReport
from matrix_sync.stack import LocalStack, ServiceStatus
from shared import clients
from shared.config import Config
from shared.extractor.run import Extraction
from shared.extractor.snapshot import ExtractResult

pytestmark = [pytest.mark.stack, pytest.mark.e2e]
MB = 1 << 20
_HOLD_64MB = "b = bytes(range(256)) * (1 << 18); print('ready', flush=True); import time; time.sleep(120)"


def _service_pids(stack: LocalStack) -> dict[str, int]:
    return {s.name: s.pid for s in stack.status() if s.pid}


def _exists(report: loadtest.LoadReport) -> dict[str, bool]:
    project = report.dataset.split(".")[0]
    try:
        clients.bigquery_client(project).get_dataset(report.dataset)
        dataset = True
    except NotFound:
        dataset = False
    return {"dataset": dataset, "bucket": clients.storage_client(project).lookup_bucket(report.bucket) is not None}


def test_small_load_converges_every_cycle_and_leaves_nothing(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    workdir = tmp_path / "work"
    report = loadtest.run_load(workdir, tables=8, max_rows=3_000, cycles=3, workers=4, mode="delta",
                               time_limit_s=600, seed=3, service_pids=_service_pids(stack),
                               project=f"load-{unique_name}")
    assert not report.stopped_early
    assert [c.failures for c in report.cycles] == [[], [], []]
    assert [c.tables for c in report.cycles] == [8, 8, 8]
    assert report.duplicate_or_lost_runs == []
    assert report.cycles[0].shipped_rows == report.cycles[0].rows == report.total_rows
    assert report.cycles[1].shipped_rows < report.cycles[0].shipped_rows / 10
    for cycle in report.cycles:
        assert len(cycle.latencies_s) == 8 and cycle.slowest_latency_s == max(cycle.latencies_s.values())
        assert cycle.source_rows_per_s == pytest.approx(cycle.rows / cycle.seconds, rel=0.01, abs=0.1)
        assert cycle.shipped_rows_per_s == pytest.approx(cycle.shipped_rows / cycle.seconds, rel=0.01, abs=0.1)
    assert {"loader", "reconciler", "validator", "bigquery", loadtest_process.OWN_PROCESS} <= report.peak_memory_mb.keys()
    assert report.ok
    assert _exists(report) == {"dataset": False, "bucket": False}
    assert report.cleanup_problems == [] and not workdir.exists()


def test_each_run_starts_from_an_empty_target_and_keep_keeps_it(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    load = {"tables": 2, "max_rows": 300, "cycles": 1, "workers": 2, "mode": "delta", "time_limit_s": 600, "seed": 5,
            "service_pids": {}, "project": f"load-{unique_name}"}
    kept = loadtest.run_load(tmp_path, keep=True, **load)  # type: ignore[arg-type]
    try:
        assert kept.kept and _exists(kept) == {"dataset": True, "bucket": True}
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"load-{kept.run}.db", f"load-{kept.run}.yaml"]
        second = loadtest.run_load(tmp_path, **load)  # type: ignore[arg-type]
    finally:
        loadtest.remove_cloud(loadtest.RunNames(f"load-{unique_name}", kept.run))
    assert second.run != kept.run and second.dataset != kept.dataset and second.bucket != kept.bucket
    # the same source again: against the first run's tables it would be a delta of nothing
    assert second.cycles[0].shipped_rows == second.total_rows and second.ok
    assert _exists(second) == {"dataset": False, "bucket": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"load-{kept.run}.db", f"load-{kept.run}.yaml"]


def test_cli_says_it_stopped_at_the_time_limit_and_leaves_a_running_stack_running(stack: LocalStack,
                                                                                  tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env["MATRIX_STACK_DIR"] = str(stack.root)
    result = subprocess.run([sys.executable, "-m", "matrix_sync.cli", "loadtest", "--tables", "2", "--max-rows", "200",
                             "--cycles", "3", "--time-limit", "0", "--dir", str(tmp_path / "work")],
                            capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped early: time limit of 0 s reached after cycle 0 ended" in result.stdout
    assert "1 of 3 cycles ran" in result.stdout
    assert "source rows/s" in result.stdout and "shipped rows/s" in result.stdout
    assert "removed: dataset matrix-load.load_" in result.stdout
    assert "stopped the local stack" not in result.stdout
    assert all(s.running for s in stack.status())
    assert not (tmp_path / "work").exists()


# --- without the stack: timing, memory and stack ownership ----------------------------------------

def _fake_config(tmp_path: Path, tables: int, wait_timeout_s: int) -> Config:
    plan = loadtest.plan_tables(tables, 200, seed=1)
    config = loadtest.write_config(tmp_path / "load.yaml", tmp_path / "load.db", plan, "delta",
                                   loadtest.RunNames("fake-project", "test"), "fake-project")
    return config.model_copy(update={"run": config.run.model_copy(update={"wait_timeout_s": wait_timeout_s})})


def _fake_chain(monkeypatch: pytest.MonkeyPatch, delays: dict[str, float], chain_s: dict[str, float]) -> None:
    """Extractions taking `delays` seconds, verdicts `chain_s` after each table's own manifest."""
    written: dict[str, float] = {}

    def extract(_config: object, names: list[str]) -> Extraction:
        time.sleep(delays[names[0]])
        written[names[0]] = time.monotonic()
        return Extraction(written=[ExtractResult(names[0], names[0], "full", "", 100, 40, 0, 1, 1, 0, 0.0)])

    def wait_for_chain(_config: object, waiting: list[ExtractResult], **_options: object) -> list[TableReport]:
        now = time.monotonic()
        return [TableReport(r.table, "t", r.run_id, load_status="applied", reconciliation="match", validation="passed")
                if now >= written[r.table] + chain_s[r.table] else TableReport(r.table, "t", r.run_id) for r in waiting]

    monkeypatch.setattr(loadtest, "extract", extract)
    monkeypatch.setattr(loadtest, "wait_for_chain", wait_for_chain)
    monkeypatch.setattr(loadtest, "POLL_S", 0.1)


def test_latency_runs_from_each_tables_own_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_chain(monkeypatch, delays={"load_000": 0.0, "load_001": 3.0}, chain_s={"load_000": 1.0, "load_001": 1.0})
    stats = loadtest.run_cycle(_fake_config(tmp_path, 2, wait_timeout_s=60), cycle=0, workers=2)
    # load_000's verdict came 1 s after its manifest, while load_001 was still extracting
    assert 1.0 <= stats.latencies_s["load_000"] < 1.5 and 1.0 <= stats.latencies_s["load_001"] < 1.5
    assert stats.failures == [] and stats.tables == 2
    assert stats.source_rows_per_s == pytest.approx(200 / stats.seconds, rel=0.02)
    assert stats.shipped_rows_per_s == pytest.approx(80 / stats.seconds, rel=0.02)


def test_a_table_without_verdict_fails_after_the_wait_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_chain(monkeypatch, delays={"load_000": 0.0, "load_001": 0.0}, chain_s={"load_000": 0.5, "load_001": 99})
    stats = loadtest.run_cycle(_fake_config(tmp_path, 2, wait_timeout_s=1), cycle=0, workers=2)
    assert stats.failures == ["load_001: no verdict 1 s after extraction (pending)"]
    assert list(stats.latencies_s) == ["load_000"]


def test_a_started_cycle_ends_and_no_new_one_starts_after_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[int] = []

    def run_cycle(_config: object, cycle: int, _workers: int) -> loadtest.CycleStats:
        time.sleep(0.4)
        ran.append(cycle)
        return loadtest.CycleStats(cycle, 1, 1, 1, 0.4, 2.5, 2.5, "t", 0.1)

    monkeypatch.setattr(loadtest, "run_cycle", run_cycle)
    monkeypatch.setattr(loadtest, "mutate_source", lambda *_args: None)
    memory = loadtest_process.MemorySampler({}, interval_s=0.1)
    stats, reason = loadtest.run_cycles(None, Path("-"), [], cycles=5, workers=1, time_limit_s=0.6,  # type: ignore[arg-type]
                                        seed=1, memory=memory)
    assert ran == [0, 1] and len(stats) == 2
    assert reason is not None and reason.startswith("time limit of 0.6 s reached after cycle 1 ended")
    assert reason.endswith("2 of 5 cycles ran")
    assert loadtest.run_cycles(None, Path("-"), [], cycles=1, workers=1, time_limit_s=0,  # type: ignore[arg-type]
                               seed=1, memory=memory)[1] is None


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the children it forked go too
        process.wait()


def _python(code: str, spawned: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    spawned.append(process)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_memory_counts_the_children_of_a_service(spawned: list[subprocess.Popen[str]]) -> None:
    """A function server's requests are handled by a worker its pid forked."""
    parent = _python("import subprocess, sys, time\n"
                     f"child = subprocess.Popen([sys.executable, '-c', {_HOLD_64MB!r}], stdout=subprocess.PIPE, text=True)\n"
                     "child.stdout.readline(); print('ready', flush=True); time.sleep(120)", spawned)
    assert len(loadtest_process.tree_pids(parent.pid)) == 2
    memory = loadtest_process.MemorySampler({"server": parent.pid})
    memory.sample()
    assert memory.peak_kb["server"] * 1024 >= 64 * MB
    assert loadtest_process.memory_kb(parent.pid) * 1024 < 32 * MB  # the parent alone


def test_memory_is_what_the_cycles_used_not_what_came_before(spawned: list[subprocess.Popen[str]]) -> None:
    process = _python("import sys, time\nb = bytes(range(256)) * (1 << 18); del b\nprint('ready', flush=True)\n"
                      "sys.stdin.readline()\nb = bytes(range(256)) * (1 << 19); time.sleep(0.8); del b; time.sleep(120)",
                      spawned)
    status = Path(f"/proc/{process.pid}/status").read_text()
    high_water_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    assert high_water_kb * 1024 >= 64 * MB  # what VmHWM reports: the work before the test
    memory = loadtest_process.MemorySampler({"service": process.pid}, interval_s=0.1)
    with memory.sampling():
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        time.sleep(1.5)
    assert memory.start_kb["service"] * 1024 < 32 * MB
    assert memory.peak_kb["service"] * 1024 >= 128 * MB  # 128 MB held for 0.8 s while sampling
    assert loadtest_process.memory_kb(process.pid) * 1024 < 32 * MB


class _FakeStack:
    def __init__(self, running: list[bool]) -> None:
        self.running = running
        self.calls: list[str] = []

    def status(self) -> list[ServiceStatus]:
        return [ServiceStatus(f"s{i}", None, 0, up, Path("-")) for i, up in enumerate(self.running)]

    def up(self) -> None:
        self.calls.append("up")

    def down(self) -> list[str]:
        self.calls.append("down")
        return []


@pytest.mark.parametrize(("running", "calls", "started_here"), [
    ([False, False], ["up", "down"], True),
    ([True, True], ["up"], False),
    ([True, False], ["up"], False),  # partly up: `up` restarts the rest, and what ran before keeps running
])
def test_the_stack_is_stopped_only_if_the_load_test_started_it(running: list[bool], calls: list[str],
                                                                started_here: bool) -> None:
    stack = _FakeStack(running)
    with pytest.raises(RuntimeError), loadtest_process.stack_for_run(stack) as started:  # type: ignore[arg-type]
        assert started is started_here
        raise RuntimeError("the load test failed")
    assert stack.calls == calls
