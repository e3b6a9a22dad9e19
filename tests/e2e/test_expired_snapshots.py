"""The bucket's retention rule deletes snapshots by age, so a table not extracted for that long has
no snapshot left: its next delta is a full snapshot instead (base manifest or key index gone), and
reconcile and validate report the table cannot be checked instead of failing on a 404."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.clients import storage_client
from shared.config import Config
from tests.e2e.test_cli import matrix_sync
from tests.support import assert_tables_equal, sample_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _expire(config: Config, table: str, *, only: str = "") -> int:
    """Deletes the table's snapshot objects (those whose name holds `only`), as the retention rule would."""
    client = storage_client()
    gone = 0
    for blob in client.list_blobs(config.gcs.bucket, prefix=f"{config.gcs.prefix}/{table}/"):
        if only in blob.name:
            blob.delete()
            gone += 1
    return gone


def _change(database: Path, sql: str) -> None:
    with sqlite3.connect(database) as db:
        db.execute(sql)


def _cycle(config: Config) -> tuple[str, str, str]:
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    return report.mode, report.load_status, report.reconciliation


def test_a_delta_whose_base_expired_is_a_full_snapshot(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    config = sample_config(stack, tmp_path / "config.yaml", seed=4, tables={"customers": ["customer_id"]},
                           suffix=unique_name)
    database = tmp_path / "matrix.db"
    assert _cycle(config) == ("full", "applied", "match")
    _change(database, "UPDATE customers SET email = 'a@example.com' WHERE customer_id = 1")
    assert _cycle(config) == ("delta", "applied", "match")

    assert _expire(config, "customers", only="/_index/") > 0  # the manifest kept, its key index gone
    _change(database, "UPDATE customers SET email = 'b@example.com' WHERE customer_id = 2")
    assert _cycle(config) == ("full", "applied", "match")

    assert _expire(config, "customers") > 0
    _change(database, "DELETE FROM customers WHERE customer_id = 3")
    assert _cycle(config) == ("full", "applied", "match")
    _change(database, "UPDATE customers SET email = 'c@example.com' WHERE customer_id = 4")
    assert _cycle(config) == ("delta", "applied", "match")


def test_a_table_whose_snapshot_expired_cannot_be_checked(stack: LocalStack, tmp_path: Path,
                                                          unique_name: str) -> None:
    path = tmp_path / "config.yaml"
    config = sample_config(stack, path, seed=4, tables={"customers": ["customer_id"]}, suffix=unique_name)
    assert _cycle(config) == ("full", "applied", "match")
    assert _expire(config, "customers") > 0

    reconciled = matrix_sync("reconcile", "--config", str(path), stack=stack, cwd=tmp_path)
    assert reconciled.returncode == 1 and "Traceback" not in reconciled.stderr, reconciled.stdout + reconciled.stderr
    assert "unverified" in reconciled.stdout
    assert "customers: the newest applied snapshot of" in reconciled.stdout
    assert "is gone from the bucket" in reconciled.stdout

    validated = matrix_sync("validate", "--config", str(path), stack=stack, cwd=tmp_path)
    assert validated.returncode == 1 and "Traceback" not in validated.stderr, validated.stdout + validated.stderr
    assert "FAILED" in validated.stdout and "is gone from the" in " ".join(validated.stdout.split())


def _overwrite(config: Config, table: str, endswith: str) -> str:
    """Overwrites the newest object of the table whose name ends so with bytes that are no Parquet or JSON."""
    blobs = [b for b in storage_client().list_blobs(config.gcs.bucket, prefix=f"{config.gcs.prefix}/{table}/")
             if b.name.endswith(endswith)]
    newest = max(blobs, key=lambda b: b.name)
    newest.upload_from_string(b"garbage written over the snapshot " * 2)
    return newest.name


@pytest.mark.parametrize("damaged", ["index-00000.parquet", ".compacted.parquet", "_manifest.json"])
def test_a_delta_whose_base_was_overwritten_is_a_full_snapshot(stack: LocalStack, tmp_path: Path,
                                                               unique_name: str, damaged: str) -> None:
    """A base manifest or key index part that no longer holds what was written used to fail every
    later extraction of the table (ArrowInvalid, ManifestError) without naming the object."""
    config = sample_config(stack, tmp_path / "config.yaml", seed=5, tables={"customers": ["customer_id"]},
                           suffix=unique_name)
    database = tmp_path / "matrix.db"
    assert _cycle(config) == ("full", "applied", "match")
    if damaged == ".compacted.parquet":  # a delta's index is the one the loader compacted
        _change(database, "UPDATE customers SET email = 'a@example.com' WHERE customer_id = 1")
        assert _cycle(config) == ("delta", "applied", "match")
    name = _overwrite(config, "customers", damaged)
    _change(database, "UPDATE customers SET email = 'b@example.com' WHERE customer_id = 2")
    assert _cycle(config) == ("full", "applied", "match"), name
    _change(database, "UPDATE customers SET email = 'c@example.com' WHERE customer_id = 3")
    assert _cycle(config) == ("delta", "applied", "match")


def test_a_table_dropped_in_bigquery_comes_back_with_the_next_cycle(stack: LocalStack, tmp_path: Path,
                                                                    unique_name: str) -> None:
    """Its next snapshot is full: a delta onto the missing table could only be refused, which took a
    second cycle to mend."""
    config = sample_config(stack, tmp_path / "config.yaml", seed=6, tables={"customers": ["customer_id"]},
                           suffix=unique_name)
    assert _cycle(config) == ("full", "applied", "match")
    bq.drop_table(f"{config.bigquery.project}.{config.bigquery.dataset}.customers")
    _change(tmp_path / "matrix.db", "UPDATE customers SET email = 'd@example.com' WHERE customer_id = 4")
    assert _cycle(config) == ("full", "applied", "match")
    assert_tables_equal(config)
