"""Delta snapshots through the whole chain: only changed rows and deleted keys travel, the table
still ends equal to the source, and every Nth snapshot is full again."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared.config import load_config
from tests.support import assert_tables_equal, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_delta_cycles_ship_only_changes_and_converge(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "small", seed=5)
    path = tmp_path / "config.yaml"
    write_config(path, url=f"sqlite:///{database}", tables=sample.TABLE_KEYS, suffix=unique_name, chunk_rows=300)
    raw = yaml.safe_load(path.read_text())
    raw["extract"] |= {"mode": "delta", "full_every": 3}
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)

    modes = []
    changes: dict[str, sample.TableChanges] | None = None
    for cycle in range(4):
        extracted = extract_all(config)
        reports = wait_for_chain(config, extracted, timeout_s=180)
        modes.append({r.mode for r in reports})
        for report, result in zip(reports, extracted, strict=True):
            assert (report.load_status, report.reconciliation, report.validation) == ("applied", "match", "passed"), report
            if report.mode == "delta":
                assert changes is not None
                change = changes[report.table]
                assert result.shipped_rows == change.inserted + change.updated
                assert result.deleted_rows == change.deleted
                assert (report.rows_inserted, report.rows_updated, report.rows_deleted) == (
                    change.inserted, change.updated, change.deleted)
        assert_tables_equal(config)
        changes = sample.mutate(database, 0.02, seed=40 + cycle)
    # full, delta, delta (chain of 2 reaches full_every=3 on the next), full again
    assert modes == [{"full"}, {"delta"}, {"delta"}, {"full"}]
