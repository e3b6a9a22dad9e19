"""A small run of the load test: tables of every key shape synced concurrently for several cycles,
every one reconciled each cycle and every snapshot applied exactly once."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync import loadtest
from matrix_sync.stack import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_small_load_converges_every_cycle(stack: LocalStack, tmp_path: Path, unique_name: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    pids = {s.name: s.pid for s in stack.status() if s.pid}
    report = loadtest.run_load(tmp_path, tables=8, max_rows=3_000, cycles=3, workers=4, mode="delta",
                               time_limit_s=600, seed=3, service_pids=pids, project=f"load-{unique_name}")
    assert not report.stopped_early
    assert [c.failures for c in report.cycles] == [[], [], []]
    assert [c.tables for c in report.cycles] == [8, 8, 8]
    assert report.duplicate_or_lost_runs == []
    assert report.cycles[1].shipped_rows < report.cycles[0].shipped_rows / 10
    assert {"loader", "reconciler", "validator", "bigquery"} <= report.peak_memory_mb.keys()
    assert report.ok
