"""`matrix-sync status` on tables whose state the verdicts no longer describe: a BigQuery table dropped
behind the pipeline's back is flagged `missing in BigQuery` with what re-creates it, and a late
delivery of an older snapshot (a `stale` ledger row, informational) recorded after an operator's delete
does not hide that the verdicts predate the delete."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator import delete, status
from matrix_sync.operator_views import status_rows
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import gcs
from shared.clients import storage_client
from shared.config import Config
from tests.support import sample_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_a_dropped_table_and_a_change_hidden_behind_a_late_delivery_need_attention(
        stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=44, suffix=unique_name,
                           tables={"customers": ["customer_id"], "payments": ["account_id", "payment_no"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    args = ["--config", str(config_path)]
    first = extract_all(config)
    assert all(r.ok for r in wait_for_chain(config, first, timeout_s=120))
    assert all(r.ok for r in wait_for_chain(config, extract_all(config), timeout_s=120))
    assert CliRunner().invoke(status, args).exit_code == 0

    bq.drop_table(table_id(config, "payments"))
    deleted = CliRunner().invoke(delete, [*args, "--table", "customers", "--key", "customer_id=3", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    older = next(r.manifest_uri for r in first if r.table == "customers")
    _deliver_late(config, older)  # the loader records it stale: a newer run is applied

    result = CliRunner().invoke(status, args)

    assert result.exit_code == 1 and "needs attention: customers, payments" in result.output, result.output
    assert ("payments: missing in BigQuery: the next cycle re-creates and reloads it "
            "(matrix-sync run --table payments)") in result.output, result.output
    shown = {name: row for name, row in status_rows(config, dt.datetime.now(dt.UTC))[0]}
    assert shown["payments"][3].startswith("missing in BigQuery"), shown["payments"]
    assert shown["customers"][5].startswith("stale ("), shown["customers"]  # shown, but it decides nothing
    assert shown["customers"][3] == "19 (snapshot 20)"
    assert shown["customers"][6:] == ("outdated: match", "outdated: passed")


def _deliver_late(config: Config, manifest_uri: str, timeout_s: float = 60) -> None:
    """A snapshot extracted as early as the applied run at `manifest_uri` but never loaded (a copy
    under a run id of its own, its manifest written last as the extractor writes it) reaches the
    loader late; waits for the loader's `stale` row of it."""
    bucket, name = gcs.split_uri(manifest_uri)
    folder, applied_run = name.rsplit("/", 2)[0], name.split("/")[-2]
    late_run = f"{applied_run[:-6]}1a7e00"
    old_root, new_root = f"gs://{bucket}/{folder}/{applied_run}/", f"gs://{bucket}/{folder}/{late_run}/"
    for blob in storage_client().list_blobs(bucket, prefix=f"{folder}/{applied_run}/"):
        if not blob.name.endswith("/_manifest.json"):
            gcs.upload(bucket, blob.name.replace(applied_run, late_run), blob.download_as_bytes(),
                       "application/octet-stream")
    manifest = json.loads(gcs.read(bucket, name))
    text = json.dumps({**manifest, "run_id": late_run}).replace(old_root, new_root)
    gcs.upload(bucket, f"{folder}/{late_run}/_manifest.json", text.encode(), "application/json")
    ledger = f"`{config.bigquery.project}.{config.bigquery.dataset}._sync_ledger`"
    deadline = time.monotonic() + timeout_s
    while not bq.query(config.bigquery.project, f"SELECT 1 FROM {ledger} WHERE run_id = '{late_run}' "
                                                "AND status = 'stale'"):
        assert time.monotonic() < deadline, f"no stale ledger row for {late_run}"
        time.sleep(0.5)
