"""An extraction that starts while an earlier snapshot of the table is still on its way to BigQuery
(a scheduled cycle beside a repair request or an operator's `extract`) takes a full snapshot: a
delta on the last applied snapshot would be refused, with an alert, once the earlier one applied."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import wait_for_chain
from matrix_sync.stack import LocalStack
from shared.extractor.lock import acquire, lock_name
from shared.extractor.run import extract
from tests.support import assert_tables_equal, orders_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_a_snapshot_issued_after_the_last_applied_one_makes_the_next_one_full(
        stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database, config = orders_config(stack, tmp_path, unique_name, rows=40)
    (first,) = wait_for_chain(config, extract(config).written, timeout_s=120)
    assert first.ok, first

    # another extraction has issued a snapshot (its manifest not applied yet): the lease records it
    lease = acquire(config.gcs.bucket, lock_name(config.gcs.prefix, "orders"), "orders", "other-extraction", 60)
    lease.next_sequence()
    lease.release()
    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = -1 WHERE id = 5")
    (overlapping,) = extract(config).written
    assert overlapping.mode == "full"
    (report,) = wait_for_chain(config, [overlapping], timeout_s=120)
    assert report.ok, report
    assert_tables_equal(config)

    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = -2 WHERE id = 6")
    (settled,) = extract(config).written  # the last issued is the last applied again
    assert settled.mode == "delta"
