"""`matrix-sync dead-letters` as an operator uses it: a delta whose base had not arrived is retried
by Pub/Sub until it is dead-lettered; the command lists it (and leaves it there), and once the base
has been applied, `--replay` sends it again and the chain applies it, so BigQuery ends equal to
the delta. Another deployment's dead letters in the same subscription are left alone."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matrix_sync.stack import LocalStack
from tests.e2e.test_cli import matrix_sync
from tests.integration.test_loader_support import Place, Writer, ledger, rows_for, table_rows, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def place_config(path: Path, place: Place) -> Path:
    path.write_text(yaml.safe_dump({
        "source": {"url": "sqlite:///unused.db"},
        "tables": [{"name": "orders", "key": ["id"]}],
        "gcs": {"bucket": place.bucket},
        "bigquery": {"project": place.project, "dataset": place.dataset},
        "pubsub": {"project": place.project},
    }))
    return path


def test_a_dead_lettered_snapshot_is_listed_then_replayed(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    place = Place.create(stack, unique_name)
    other = Place.create(stack, f"{unique_name}o")
    config = place_config(tmp_path / "config.yaml", place)
    writer = Writer(place, "orders")
    base = writer.full(rows_for(1, 5), sequence=1)  # held back: its manifest is written late
    delta = writer.delta(base, rows_for(2, 8, start=2), sequence=2)
    stranger = Writer(other, "orders")
    stranger_delta = stranger.delta(stranger.full(rows_for(1, 3), sequence=1), rows_for(1, 4), sequence=2)
    delta.publish()
    stranger_delta.publish()

    def listed() -> str | None:
        shown = matrix_sync("dead-letters", "--config", str(config), stack=stack, cwd=tmp_path)
        return shown.stdout if shown.returncode == 1 and delta.run_id in shown.stdout else None

    listing = wait_for(listed, 180, "the delta to be dead-lettered", poll=5)
    assert "waiting: 1" in listing and "loader" in listing
    assert stranger_delta.run_id not in listing
    again = matrix_sync("dead-letters", "--config", str(config), stack=stack, cwd=tmp_path)
    assert again.returncode == 1 and delta.run_id in again.stdout, "listing must leave the message there"
    assert ledger(place) == []

    base.publish()
    wait_for(lambda: [r for r in ledger(place, base.run_id) if r["status"] == "applied"], 60, "the base to apply")
    replayed = matrix_sync("dead-letters", "--config", str(config), "--replay", stack=stack, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "sent again: 1" in replayed.stdout and delta.run_id in replayed.stdout

    applied = wait_for(lambda: [r for r in ledger(place, delta.run_id) if r["status"] == "applied"], 60,
                       "the replayed delta to apply")
    assert (applied[0]["rows_inserted"], applied[0]["rows_updated"], applied[0]["rows_deleted"]) == (4, 4, 1)
    assert table_rows(place, "orders") == delta.rows
    after = matrix_sync("dead-letters", "--config", str(config), stack=stack, cwd=tmp_path)
    assert after.returncode == 0 and "no dead letters" in after.stdout, after.stdout + after.stderr

    stranger_config = place_config(tmp_path / "other.yaml", other)

    def discarded() -> str | None:
        theirs = matrix_sync("dead-letters", "--config", str(stranger_config), "--discard", "--yes", stack=stack,
                             cwd=tmp_path)
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        return theirs.stdout if stranger_delta.run_id in theirs.stdout else None

    assert "discarded: 1" in wait_for(discarded, 60, "the other deployment's dead letter", poll=5)
    assert stranger_delta.run_id not in matrix_sync("dead-letters", "--config", str(stranger_config),
                                                           stack=stack, cwd=tmp_path).stdout
