"""Cloud Scheduler's path: an extract request on Pub/Sub, pulled by the on-prem agent, becomes a
snapshot that the chain loads."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.stack import LocalStack
from tests.e2e.test_cli import matrix_sync
from tests.support import assert_tables_equal, wait_for_applied, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_scheduled_request_is_pulled_by_the_agent_and_loaded(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=9)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "payments": ["account_id", "payment_no"]},
                          suffix=unique_name)
    requested = matrix_sync("request", "--config", str(tmp_path / "config.yaml"), "--table", "payments",
                            stack=stack, cwd=tmp_path)
    assert requested.returncode == 0, requested.stderr
    served = matrix_sync("agent", "--config", str(tmp_path / "config.yaml"), "--once", stack=stack, cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert "payments: full snapshot" in served.stdout and "accounts" not in served.stdout.split("waiting")[1]
    wait_for_applied(config, "payments")
    ran = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), "--table", "accounts", stack=stack, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert_tables_equal(config)
