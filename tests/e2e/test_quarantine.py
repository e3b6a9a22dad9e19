"""A row that breaks its declared schema is quarantined with the reason, counted in the manifest,
kept out of BigQuery, and reported by the validator; the other rows load as usual."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.manifest import parse_manifest
from tests.support import bigquery_rows, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_row_breaking_its_declared_length_is_quarantined(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=2)
    with sqlite3.connect(database) as connection:  # SQLite does not enforce VARCHAR(320); the model does
        connection.execute("UPDATE customers SET email = ? WHERE customer_id = 5", ("x" * 400 + "@example.com",))
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                          suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    [result] = extract_all(config)
    [report] = wait_for_chain(config, [result], timeout_s=120)

    assert result.quarantined == 1 and result.rows == 19
    assert report.load_status == "applied" and report.reconciliation == "match"
    assert report.validation == "failed" and report.failed_checks == ["quarantined_rows"]
    bucket, name = gcs.split_uri(result.manifest_uri)
    manifest = parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=name.rsplit("/", 1)[0])
    assert manifest.quarantine.rows == 1
    [entry] = [json.loads(line) for uri in manifest.quarantine.uris for line in gcs.read(*gcs.split_uri(uri)).splitlines()]
    assert entry["key"] == {"customer_id": "5"} and "email" in entry["reason"]
    assert ("5",) not in bigquery_rows(config, "customers") and len(bigquery_rows(config, "customers")) == 19


def test_invalid_utf8_text_is_quarantined_not_fatal(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "bad.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER NOT NULL PRIMARY KEY, body TEXT)")
        connection.execute("INSERT INTO notes VALUES (1, 'ok'), (2, CAST(X'FF61' AS TEXT)), (3, 'Grüße')")
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={"notes": ["id"]},
                          suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    [result] = extract_all(config)
    [report] = wait_for_chain(config, [result], timeout_s=120)
    assert (result.rows, result.quarantined) == (2, 1)
    assert report.load_status == "applied" and report.reconciliation == "match"
    assert sorted(bigquery_rows(config, "notes")) == [("1",), ("3",)]
