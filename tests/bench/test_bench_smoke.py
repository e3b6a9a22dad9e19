"""The benchmark harness end to end at toy sizes (`python -m bench --smoke`), so it cannot rot.

Runs against the session's local stack and the machine's PostgreSQL. The dlt and reladiff sides
need .venv-bench (`make bench-venv`); without it only ours runs and their test is skipped."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from bench.run import BENCH_PYTHON, ROOT
from matrix_sync.stack import LocalStack

pytestmark = [pytest.mark.stack]
COMPETITORS = BENCH_PYTHON.exists()


@pytest.fixture(scope="module")
def smoke(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench", "--smoke", "--stack-root", str(stack.root),
               "--work", str(out / "work"), "--results", str(out / "results")]
    if not COMPETITORS:
        command.append("--no-competitors")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    [result] = (out / "results").glob("*-smoke.json")
    summary = json.loads(result.read_text())
    summary["markdown"] = (out / "results" / "latest-smoke.md").read_text()
    return summary


def _sides(summary: dict[str, Any], scenario: str) -> set[str]:
    return {m["side"] for m in summary["measurements"] if m["scenario"] == scenario}


def test_smoke_measures_every_scenario_of_ours(smoke: dict[str, Any]) -> None:
    assert {"ours-local", "ours-gcs"} <= _sides(smoke, "initial")
    assert {"ours-delta", "ours-full"} <= _sides(smoke, "change")
    change = {m["side"]: m for m in smoke["measurements"] if m["scenario"] == "change"}
    assert change["ours-delta"]["rows_shipped"] < change["ours-full"]["rows_shipped"]
    assert change["ours-delta"]["bytes_data"] < change["ours-full"]["bytes_data"]
    # a delta ships an index patch of its 30 rows; the loader compacts the whole index in the cloud
    assert change["ours-delta"]["bytes_index"] * 10 < change["ours-full"]["bytes_index"]
    assert change["ours-delta"]["bytes_compacted_index"] > change["ours-delta"]["bytes_index"]
    assert change["ours-full"]["bytes_compacted_index"] == 0
    # one batch of 1% updates, 0.5% inserts, 0.5% deletes of the 2,000 rows since the last cycle
    assert (change["ours-delta"]["rows_shipped"], change["ours-delta"]["deleted_keys_shipped"]) == (30, 10)
    assert (change["ours-full"]["rows_inserted"], change["ours-full"]["rows_updated"],
            change["ours-full"]["rows_deleted"]) == (10, 20, 10)
    for side in ("ours", "ours-keys"):  # fingerprint + bucket diff, and the operator's compare-keys
        reconcile = [m for m in smoke["measurements"] if m["scenario"] == "reconcile" and m["side"] == side]
        assert sorted((m["planted"], m["differing_keys"]) for m in reconcile) == [(0, 0), (100, 100)], side
    [hashing] = [m for m in smoke["measurements"] if m["scenario"] == "hashing"]
    assert hashing["rowhasher_rows_per_s"] > 0 and hashing["ratio_rowhasher_vs_sha256"] > 1
    assert all(m["peak_rss_mb"] > 0 for m in smoke["measurements"] if m["side"] == "ours-local")
    for heading in ("(1) Initial extract", "(2) Change cycle", "(3) Reconciliation", "(4) Extractor peak memory",
                    "(5) Hashing throughput", "## Noise"):
        assert heading in smoke["markdown"]


@pytest.mark.skipif(not COMPETITORS, reason=f"{BENCH_PYTHON.parent.parent} is missing, so the dlt and reladiff sides "
                                            "of the smoke benchmark did not run; `make bench-venv` installs them")
def test_smoke_measures_dlt_and_reladiff_beside_ours(smoke: dict[str, Any]) -> None:
    assert "dlt" in _sides(smoke, "initial")
    assert "dlt-merge" in _sides(smoke, "change")
    reladiff = [m for m in smoke["measurements"] if m["scenario"] == "reconcile" and m["side"] == "reladiff"]
    assert sorted((m["planted"], m["differing_keys"]) for m in reladiff) == [(0, 0), (100, 100)]
    assert "dlt" in smoke["markdown"] and "reladiff" in smoke["markdown"]
