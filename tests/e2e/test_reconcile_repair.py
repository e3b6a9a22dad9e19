"""The reconciler through the real chain: rows added and deleted behind the pipeline's back are
found by key, the extra one is deleted, the missing one is requested from the extractor again, a
deep check catches a value edited without touching the hash columns, and the next cycle closes the
loop."""
from __future__ import annotations

from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.config import Config
from shared.extractor.snapshot import ExtractResult
from shared.hashing import RowHasher
from shared.topology import EXTRACT_REQUESTS_TOPIC, RECONCILIATION_TABLE
from tests.support import assert_tables_equal, sample_config
from tests.support_reconcile import execute, pull_json, pull_subscription, republish_loaded, table_id, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _copy_with_new_key(config, table: str, key_column: str, old_key: int, new_key: int) -> None:  # type: ignore[no-untyped-def]
    """Inserts a copy of a row under a new key, with hashes computed as the extractor would: a
    plausible row the snapshot does not have."""
    full_id = table_id(config, table)
    fields = bq.get_table(full_id).schema  # type: ignore[union-attr]
    row = dict(bq.query(config.bigquery.project, f"SELECT * FROM `{full_id}` WHERE {key_column} = {old_key}")[0].items())
    row[key_column] = new_key
    data = [f.name for f in fields if not f.name.startswith("_")]
    row["_key_hash"], row["_row_hash"] = RowHasher([data.index(key_column)])([row[name] for name in data])
    bq.insert_rows(full_id, list(fields), [row])


def _synced_customers(stack: LocalStack, tmp_path: Path, unique_name: str) -> tuple[Config, ExtractResult]:
    config = sample_config(stack, tmp_path / "config.yaml", seed=21, suffix=unique_name,
                           tables={"customers": ["customer_id"]})
    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=120)
    assert (report.load_status, report.reconciliation) == ("applied", "match"), report
    return config, extracted


def test_reconciler_finds_repairs_and_requests_by_key(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    config, extracted = _synced_customers(stack, tmp_path, unique_name)
    requests = pull_subscription(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, "extract-requests-test")
    alerts = pull_subscription(config.pubsub.project, "alerts", "alerts-reconcile-test")

    # behind the pipeline's back: one row gone, one row added, one value edited (hash columns untouched)
    execute(config, "DELETE FROM {t:customers} WHERE customer_id = 3")
    _copy_with_new_key(config, "customers", "customer_id", 4, 9999)
    execute(config, "UPDATE {t:customers} SET email = 'someone.else@example.com' WHERE customer_id = 5")

    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri)
    first = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 2)[-1]
    assert first["verdict"] == "mismatch" and first["mode"] == "fingerprint"
    assert (first["missing_rows"], first["extra_rows"], first["changed_rows"]) == (1, 1, 0)
    assert (first["rows_deleted"], first["keys_requested"], first["full_snapshot_requested"]) == (1, 1, False)
    assert first["bytes_processed"] is not None and first["jobs"] >= 4 and first["duration_s"] > 0
    assert not bq.query(config.bigquery.project, f"SELECT 1 FROM `{table_id(config, 'customers')}` "
                                                 "WHERE customer_id = 9999")
    request = pull_json(requests, lambda body: body.get("run_id") == extracted.run_id)
    assert request["keys"] == [[3]] and request["table"] == "customers"
    assert request["target"] == table_id(config, "customers") and "1 missing" in str(request["reason"])
    alert = pull_json(alerts, lambda body: body.get("stage") == "reconciler")
    assert alert["kind"] == "reconciled" and alert["extra_rows"] == 1

    # a deep check (asked for in the message) also sees the edited value, re-stamps its hash and
    # asks for both keys; nobody served the first request, so 3 is still missing
    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri, deep=True)
    deep = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 3)[-1]
    assert deep["mode"] == "deep" and deep["stale_hash_rows"] == 1
    assert (deep["missing_rows"], deep["extra_rows"], deep["changed_rows"]) == (1, 0, 1)
    assert (deep["rows_restamped"], deep["keys_requested"]) == (1, 2)
    request = pull_json(requests, lambda body: body.get("run_id") == extracted.run_id and len(body["keys"]) == 2)
    assert sorted(request["keys"]) == [[3], [5]]

    # the next cycle (what serving the request amounts to) rewrites the re-stamped row and
    # re-inserts the missing one
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert (report.reconciliation, report.rows_inserted, report.rows_updated) == ("match", 1, 1), report
    assert_tables_equal(config)


def test_rows_added_by_hand_with_made_up_or_no_hashes_are_found_by_their_key(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """A hand-written INSERT leaves the hash columns NULL or fills them with anything. The
    fingerprint query failed on hashes that are no hex, at every check; NULL key hashes read as a
    missing key (the row's own key was requested, nothing was deleted). The key is what tells."""
    config, extracted = _synced_customers(stack, tmp_path, unique_name)
    requests = pull_subscription(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, "extract-requests-by-hand")
    execute(config, "INSERT INTO {t:customers} (customer_id, _key_hash, _row_hash) VALUES (424242, 'by hand', 'n/a')")
    execute(config, "INSERT INTO {t:customers} (customer_id, email) VALUES (7, 'copy@example.com')")

    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri)
    certificate = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 2)[-1]
    assert certificate["verdict"] == "mismatch"
    assert (certificate["missing_rows"], certificate["extra_rows"], certificate["duplicate_rows"]) == (0, 1, 1)
    assert (certificate["rows_deleted"], certificate["keys_requested"]) == (3, 1)
    request = pull_json(requests, lambda body: body.get("run_id") == extracted.run_id)
    assert request["keys"] == [[7]]
    assert not bq.query(config.bigquery.project, f"SELECT 1 FROM `{table_id(config, 'customers')}` "
                                                 "WHERE customer_id IN (7, 424242)")

    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert report.reconciliation == "match", report
    assert_tables_equal(config)


def test_a_row_carrying_another_keys_hashes_is_deleted_and_the_genuine_key_requested(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """A copy of row 3 under key 9002 with row 3's hash columns groups with row 3 in the fingerprint
    diff. Deleting the duplicate by the snapshot's key values deleted the genuine row 3, kept the
    copy, and the next check said `match`."""
    config, extracted = _synced_customers(stack, tmp_path, unique_name)
    requests = pull_subscription(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, "extract-requests-intruder")
    execute(config, "INSERT INTO {t:customers} SELECT * REPLACE (9002 AS customer_id) FROM {t:customers} "
                    "WHERE customer_id = 3")

    republish_loaded(config, "customers", extracted.run_id, extracted.manifest_uri)
    certificate = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 2)[-1]
    assert (certificate["verdict"], certificate["duplicate_rows"], certificate["rows_deleted"]) == ("mismatch", 1, 2)
    assert pull_json(requests, lambda body: body.get("run_id") == extracted.run_id)["keys"] == [[3]]
    assert not bq.query(config.bigquery.project, f"SELECT 1 FROM `{table_id(config, 'customers')}` "
                                                 "WHERE customer_id IN (3, 9002)")

    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert report.reconciliation == "match", report
    assert_tables_equal(config)
