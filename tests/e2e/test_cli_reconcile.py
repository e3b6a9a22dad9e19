"""`matrix-sync reconcile` as operators type it: the fingerprint check is blind to a value edited in
BigQuery without its hashes, `--deep` finds, repairs and requests it and exits 1, and `--publish`
hands the same request to the reconciler function through `reconcile-requests`. A target BigQuery
cannot check (a hash column dropped by hand) is one line naming what BigQuery said, not a traceback.
Without --table it checks the config's tables, not others sharing the dataset, and a certificate's
message is printed whole below the table."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared.topology import EXTRACT_REQUESTS_TOPIC, RECONCILIATION_TABLE
from tests.e2e.test_cli import matrix_sync
from tests.support import sample_config, write_config
from tests.support_reconcile import execute, pull_json, pull_subscription, table_id, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def test_reconcile_deep_finds_what_the_fingerprint_cannot(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=8)
    path = tmp_path / "config.yaml"
    config = write_config(path, url=f"sqlite:///{database}", tables={"customers": ["customer_id"]}, suffix=unique_name)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    (extracted,) = extract_all(config)
    (report,) = wait_for_chain(config, [extracted], timeout_s=120)
    assert report.reconciliation == "match", report
    requests = pull_subscription(config.pubsub.project, EXTRACT_REQUESTS_TOPIC, "extract-requests-cli-test")
    execute(config, "UPDATE {t:customers} SET email = 'edited.by.hand@example.com' WHERE customer_id = 2")

    shallow = matrix_sync("reconcile", "--config", str(path), "--table", "customers", stack=stack, cwd=tmp_path)
    assert shallow.returncode == 0, shallow.stdout + shallow.stderr
    assert "fingerprint" in shallow.stdout and "match" in shallow.stdout

    deep = matrix_sync("reconcile", "--config", str(path), "--table", "customers", "--deep", stack=stack, cwd=tmp_path)
    assert deep.returncode == 1, deep.stdout + deep.stderr
    assert "deep" in deep.stdout and "mismatch" in deep.stdout and "1 key(s)" in deep.stdout
    rows = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 3)
    assert [(r["mode"], r["verdict"]) for r in rows] == [("fingerprint", "match"), ("fingerprint", "match"),
                                                         ("deep", "mismatch")]
    assert (rows[-1]["stale_hash_rows"], rows[-1]["rows_restamped"], rows[-1]["keys_requested"]) == (1, 1, 1)
    assert '"requested_by": "operator"' in str(rows[-1]["details"])
    assert pull_json(requests, lambda body: body.get("run_id") == extracted.run_id)["keys"] == [[2]]

    published = matrix_sync("reconcile", "--config", str(path), "--deep", "--publish", stack=stack, cwd=tmp_path)
    assert published.returncode == 0 and "reconcile request" in published.stdout, published.stdout + published.stderr
    by_function = wait_for_rows(config, RECONCILIATION_TABLE, extracted.run_id, 4)[-1]
    assert by_function["mode"] == "deep" and '"requested_by": "operator"' in str(by_function["details"])


def test_a_target_bigquery_cannot_check_is_one_line(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    path = tmp_path / "config.yaml"
    config = sample_config(stack, path, seed=8, tables={"customers": ["customer_id"]}, suffix=unique_name)
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert report.reconciliation == "match", report
    execute(config, "CREATE OR REPLACE TABLE {t:customers} AS SELECT * EXCEPT (_row_hash) FROM {t:customers}")

    result = matrix_sync("reconcile", "--config", str(path), stack=stack, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # the table's own line: others would go on
    assert "Traceback" not in result.stderr and "_row_hash" in result.stderr
    assert result.stderr.startswith("customers: not reconciled, BadRequest: 400 "), result.stderr


def test_the_configs_tables_are_checked_and_messages_shown_whole(stack: LocalStack, tmp_path: Path,
                                                                  unique_name: str) -> None:
    path = tmp_path / "config.yaml"
    config = sample_config(stack, path, seed=8, tables={"customers": ["customer_id"], "floats": ["id"]},
                           suffix=unique_name)
    floats = [f"f{i}" for i in range(330)]  # a rebuild query past BigQuery's length limit
    with sqlite3.connect(tmp_path / "matrix.db") as db:
        db.execute(f"CREATE TABLE floats (id INTEGER PRIMARY KEY, {', '.join(f'{f} REAL' for f in floats)})")
        db.executemany(f"INSERT INTO floats VALUES ({', '.join('?' * 331)})",
                       [(i, *(i / 7 + n for n in range(330))) for i in range(5)])
    other_path = tmp_path / "other.yaml"
    other = write_config(other_path, url=f"sqlite:///{tmp_path / 'matrix.db'}", tables={"accounts": ["account_id"]},
                         suffix=unique_name)
    reports = wait_for_chain(config, extract_all(config), timeout_s=180)
    reports += wait_for_chain(other, extract_all(other), timeout_s=120)
    assert [r.reconciliation for r in reports] == ["match"] * 3, reports

    result = matrix_sync("reconcile", "--config", str(path), "--deep", stack=stack, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "customers" in result.stdout and "accounts" not in result.stdout
    assert ("floats: deep mode unavailable (rebuilding the hashes of 331 columns (330 FLOAT64) takes a"
            in result.stdout), result.stdout


def test_the_tables_own_settings_decide_unless_told_and_a_broken_document_is_refused(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    path = tmp_path / "config.yaml"
    config = sample_config(stack, path, seed=9, tables={"customers": ["customer_id"]}, suffix=unique_name)
    (report,) = wait_for_chain(config, extract_all(config), timeout_s=120)
    assert report.reconciliation == "match", report
    execute(config, "UPDATE {t:customers} SET email = 'edited.by.hand@example.com' WHERE customer_id = 2")
    execute(config, "INSERT INTO {t:customers} SELECT * REPLACE (9999 AS customer_id) FROM {t:customers} "
                    "WHERE customer_id = 3")
    reconcile = ("reconcile", "--config", str(path), "--table", "customers")

    # a typo in a document that says "do not repair": refused, not read as the defaults (which delete)
    typo = matrix_sync(*reconcile, stack=stack, cwd=tmp_path,
                       extra_env={"MATRIX_RECONCILE": '{"default": {"repair": false, "sample_key": 5}}'})
    assert typo.returncode == 2 and "Traceback" not in typo.stderr, typo.stdout + typo.stderr
    assert "MATRIX_RECONCILE for" in typo.stderr and "sample_key" in typo.stderr
    not_an_object = matrix_sync(*reconcile, stack=stack, cwd=tmp_path,
                                extra_env={"MATRIX_RECONCILE": '{"tables": {"customers": [1, 2]}}'})
    assert not_an_object.returncode == 2, not_an_object.stdout + not_an_object.stderr
    assert "'tables.customers' must be an object of settings" in not_an_object.stderr

    # the table's own `deep: true` is taken when the command does not say --fingerprint or --deep
    own = matrix_sync(*reconcile, stack=stack, cwd=tmp_path,
                      extra_env={"MATRIX_RECONCILE": '{"tables": {"customers": {"deep": true, "repair": false}}}'})
    assert own.returncode == 1, own.stdout + own.stderr
    assert "│ deep " in own.stdout and "mismatch" in own.stdout
    kept = bq.query(config.bigquery.project, f"SELECT COUNT(*) AS n FROM `{table_id(config, 'customers')}` "
                                             "WHERE customer_id = 9999")
    assert kept[0]["n"] == 1  # repair: false was taken
    told = matrix_sync(*reconcile, "--fingerprint", stack=stack, cwd=tmp_path,
                       extra_env={"MATRIX_RECONCILE": '{"tables": {"customers": {"deep": true, "repair": false}}}'})
    assert "│ fingerprint " in told.stdout, told.stdout + told.stderr
    typed_wrong = matrix_sync("reconcile", "--config", str(path), "--table", "custmers", "--publish", stack=stack,
                              cwd=tmp_path)
    assert typed_wrong.returncode == 2 and "table 'custmers' is not in the config" in typed_wrong.stderr
    assert "published" not in typed_wrong.stdout
    unpublished = matrix_sync("reconcile", "--config", str(path), "--table", "custmers", stack=stack, cwd=tmp_path)
    assert unpublished.returncode == 2 and "is not in the config" in unpublished.stderr, unpublished.stderr
