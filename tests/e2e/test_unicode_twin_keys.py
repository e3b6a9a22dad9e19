"""Text keys that differ only in their Unicode normalisation (`é` as one code point and as `e` +
U+0301; `Å` as U+00C5, U+212B and `A` + U+030A) are distinct keys of a binary-ordered source, and
BigQuery keeps each row, also when they sort next to each other, where they share one key hash.
They used to fail the table as a key "held by more than one row"."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config
from shared.identifiers import quote_bigquery
from tests.support import ensure_resources, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

TWINS = ["caf\u00e9", "cafe\u0301", "\u00c5", "\u212b", "A\u030a"]


def source(database: Path) -> set[tuple[str, int]]:
    with sqlite3.connect(database) as db:
        return set(db.execute("SELECT k, v FROM words"))


def target(config: Config) -> set[tuple[str, int]]:
    table = quote_bigquery(config.bigquery.project, config.bigquery.dataset, "words")
    return {(row["k"], row["v"]) for row in bq.query(config.bigquery.project, f"SELECT k, v FROM {table}")}


def test_keys_equal_only_after_normalisation_are_each_kept(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "words.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE words (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        db.executemany("INSERT INTO words VALUES (?, ?)", [(k, i) for i, k in enumerate([*TWINS, "zebra"])])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"words": ["k"]},
                          suffix=unique_name, chunk_rows=2)  # twins on both sides of a chunk boundary, too
    ensure_resources(stack, config)

    (full,) = extract_all(config)
    (loaded,) = wait_for_chain(config, [full], timeout_s=120)
    assert (full.rows, loaded.load_status) == (6, "applied"), loaded
    assert target(config) == source(database)

    with sqlite3.connect(database) as db:
        db.execute("UPDATE words SET v = 100 WHERE k = ?", ["caf\u00e9"])
        db.execute("DELETE FROM words WHERE k = ?", ["\u212b"])
        db.execute("INSERT INTO words VALUES (?, 7)", ["e\u0301t\u00e9"])
    (second,) = extract_all(config)
    (applied,) = wait_for_chain(config, [second], timeout_s=120)
    assert applied.load_status == "applied", applied
    assert target(config) == source(database)
    assert ("cafe\u0301", 1) in target(config) and ("caf\u00e9", 100) in target(config)
