"""A chain of deltas keeps only the compacted key indexes still read: the loader deletes the others
once two newer snapshots are applied, and the chain goes on as deltas that reconcile."""
from __future__ import annotations

import posixpath
import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import gcs, key_index
from shared.clients import storage_client
from shared.config import Config
from tests.integration.test_loader_support import wait_for
from tests.support import assert_tables_equal, orders_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _cycle(config: Config) -> tuple[str, str]:
    """One cycle of the one table: (its mode, its manifest's folder), once loaded, reconciled equal, validated."""
    extracted = extract_all(config)
    (report,) = wait_for_chain(config, extracted, timeout_s=180)
    assert (report.load_status, report.reconciliation, report.validation) == ("applied", "match", "passed"), report
    assert_tables_equal(config)
    return report.mode, posixpath.dirname(extracted[0].manifest_uri)


def _change(database: Path, cycle: int) -> None:
    with sqlite3.connect(database) as db:
        db.execute("UPDATE orders SET amount = amount + 1 WHERE id % 50 = ?", (cycle,))
        db.execute("DELETE FROM orders WHERE id % 97 = ?", (cycle,))
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(10_000 * (cycle + 1) + i, i) for i in range(25)])


def _objects(folder: str) -> set[str]:
    bucket, prefix = gcs.split_uri(folder + "/")
    return {blob.name.removeprefix(prefix) for blob in storage_client().list_blobs(bucket, prefix=prefix)}


def _compacted_parts(folder: str) -> set[str]:
    return {n for n in _objects(folder) if n.endswith(key_index.COMPACTED_PART_SUFFIX)}


def test_only_the_two_newest_deltas_keep_their_compacted_index(stack: LocalStack, tmp_path: Path,
                                                               unique_name: str) -> None:
    database, config = orders_config(stack, tmp_path, unique_name, rows=3_000)
    mode, full = _cycle(config)
    assert mode == "full"
    full_objects = _objects(full)
    deltas = []
    for cycle in range(4):
        _change(database, cycle)
        mode, folder = _cycle(config)
        assert mode == "delta"
        deltas.append(folder)

    def only_the_newest_two() -> bool:
        return [bool(_compacted_parts(f)) for f in deltas] == [False, False, True, True]

    wait_for(only_the_newest_two, 30, "the compacted parts of the two oldest deltas deleted")
    for folder in deltas:
        names = _objects(folder)
        assert {"_manifest.json", key_index.COMPACTED_LISTING} <= names, folder
        assert any(n.startswith("part-") for n in names) and any(n.startswith("_index/patch-") for n in names)
    assert _objects(full) == full_objects, "a full snapshot's objects are never pruned"

    _change(database, 4)
    assert _cycle(config)[0] == "delta"
