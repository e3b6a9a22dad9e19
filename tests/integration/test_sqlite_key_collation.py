"""A SQLite text key declared COLLATE NOCASE sorts 'a' before 'B' in its own order, where the delta's
merge join (and BigQuery) compare by code point: every delta was abandoned for a full snapshot.
The key-ordered select sorts text keys byte-wise whatever their declared collation."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import wait_for_chain
from matrix_sync.stack import LocalStack
from shared.extractor.run import extract_tables
from tests.support import assert_tables_equal, write_config

pytestmark = pytest.mark.stack


def test_a_nocase_text_key_gets_deltas(stack: LocalStack, tmp_path: Path, unique_name: str,
                                       caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "nocase.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE names (k text COLLATE NOCASE PRIMARY KEY, v int)")
        connection.executemany("INSERT INTO names VALUES (?, ?)", [("a", 1), ("B", 2), ("c", 3), ("D", 4), ("é", 5)])
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={"names": ["k"]},
                          suffix=unique_name, chunk_rows=2)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    assert wait_for_chain(config, extract_tables(config), timeout_s=120, poll_s=0.2)[0].ok

    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE names SET v = 9 WHERE k = 'c'")
        connection.execute("DELETE FROM names WHERE k = 'B'")
        connection.execute("INSERT INTO names VALUES ('b2', 6)")
    (delta,) = extract_tables(config)
    (report,) = wait_for_chain(config, [delta], timeout_s=120, poll_s=0.2)

    assert "abandoned" not in caplog.text
    assert (delta.mode, delta.shipped_rows, delta.deleted_rows) == ("delta", 2, 1)
    assert report.ok and (report.rows_inserted, report.rows_updated, report.rows_deleted) == (1, 1, 1)
    assert_tables_equal(config)
