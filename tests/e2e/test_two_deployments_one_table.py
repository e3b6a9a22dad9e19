"""Two deployments whose configs name the same BigQuery table (one bucket, two prefixes, one dataset)
would each replace the other's rows every cycle while every check said `match`: the loader refuses
the second one's snapshots, naming where the table is loaded from, until the table is dropped."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import ledger
from shared.config import Config, load_config
from tests.support import assert_tables_equal, orders_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _second_deployment(first: Path, tmp_path: Path) -> Config:
    """Another source of `orders` (ids 1..6, other amounts), the same bucket under another prefix and
    the same dataset: the same target table."""
    database = tmp_path / "second" / "source.db"
    database.parent.mkdir()
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)")
        db.executemany("INSERT INTO orders VALUES (?, ?)", [(i, -i) for i in range(1, 7)])
    settings = yaml.safe_load(first.read_text())
    settings["source"]["url"] = f"sqlite:///{database}"
    settings["gcs"]["prefix"] = "second-deployment"
    path = database.parent / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def _amounts(config: Config) -> dict[int, int]:
    rows = bq.query(config.bigquery.project, f"SELECT id, amount FROM `{table_id(config, 'orders')}`")
    return {row["id"]: row["amount"] for row in rows}


def test_a_second_deployment_writing_the_same_table_is_refused_until_the_table_is_dropped(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    _, first = orders_config(stack, tmp_path, unique_name, rows=10)
    second = _second_deployment(tmp_path / "config.yaml", tmp_path)
    [loaded] = wait_for_chain(first, extract_all(first), timeout_s=120)
    assert loaded.ok, loaded
    first_rows = {i: i * 10 for i in range(1, 11)}

    for _ in range(2):  # a full snapshot, then the one after its refusal: both refused
        [refused] = wait_for_chain(second, extract_all(second), timeout_s=120)
        assert refused.load_status == ledger.REFUSED, refused
        assert refused.message.startswith(f"the table is loaded from gs://{first.gcs.bucket}/snapshots (run "
                                          f"{loaded.run_id}), this snapshot comes from "
                                          f"gs://{first.gcs.bucket}/second-deployment")
        assert _amounts(first) == first_rows  # the first deployment's rows, untouched
    [again] = wait_for_chain(first, extract_all(first), timeout_s=120)
    assert again.ok and again.mode == "full", again  # a refusal in the ledger: the next snapshot is full
    assert_tables_equal(first)

    bq.client(first.bigquery.project).delete_table(table_id(first, "orders"))  # hands the table over
    [taken] = wait_for_chain(second, extract_all(second), timeout_s=120)
    assert taken.ok, taken
    assert _amounts(second) == {i: -i for i in range(1, 7)}
    assert_tables_equal(second)
    [refused] = wait_for_chain(first, extract_all(first), timeout_s=120)
    assert refused.load_status == ledger.REFUSED and "second-deployment" in refused.message
