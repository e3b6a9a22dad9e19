"""The commands a user types, as subprocesses: exit codes, one-line errors, summary tables."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.errors import NO_CREDENTIALS
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from shared import ledger
from tests.support import assert_tables_equal, bigquery_rows, wait_for_applied, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]
CLI = [sys.executable, "-m", "matrix_sync.cli"]


def matrix_sync(*args: str, stack: LocalStack | None = None, cwd: Path | None = None,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    if stack is not None:
        env["MATRIX_STACK_DIR"] = str(stack.root)
    env.update(extra_env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_run_syncs_a_config_the_stack_has_never_seen(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=3)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables=sample.TABLE_KEYS,
                          suffix=unique_name)
    result = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for table in sample.TABLE_KEYS:
        assert table in result.stdout
    assert "match" in result.stdout and "passed" in result.stdout
    assert_tables_equal(config)


def test_a_key_two_rows_hold_is_quarantined_then_heals(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=4)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                          suffix=unique_name)
    with sqlite3.connect(database) as connection:  # the configured key is no primary key any more
        ddl = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'customers'").fetchone()[0]
        connection.execute("ALTER TABLE customers RENAME TO original")
        connection.execute(ddl.replace(",\n    PRIMARY KEY (customer_id)", ""))
        connection.execute("INSERT INTO customers SELECT * FROM original")
        twice = connection.execute("SELECT min(customer_id) FROM customers").fetchone()[0]
    run = ("run", "--config", str(tmp_path / "config.yaml"))
    assert matrix_sync(*run, stack=stack, cwd=tmp_path).returncode == 0

    # A second row with the same key: real BigQuery's MERGE could match neither, so both are
    # quarantined, the key leaves BigQuery, and `run` says why it is not verified.
    with sqlite3.connect(database) as connection:
        connection.execute("INSERT INTO customers SELECT * FROM original WHERE customer_id = ?", (twice,))
    result = matrix_sync(*run, stack=stack, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "quarantined_rows" in result.stdout
    assert "not verified: customers (validation failed: quarantined_rows)" in result.stderr
    assert "customers: 2 row(s) quarantined, each with its reason, in gs://" in result.stderr
    summary = next(line for line in result.stdout.splitlines() if line.startswith("│ customers"))
    assert summary.split("│")[3].strip() == f"{sample.SIZES['tiny'] + 1:,}"  # source rows: quarantined ones too
    in_bigquery = bigquery_rows(config, "customers")
    assert (str(twice),) not in in_bigquery and len(in_bigquery) == sample.SIZES["tiny"] - 1
    compared = matrix_sync("compare-keys", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout + compared.stderr  # the same rows as the snapshot
    assert "customers: 1 key value(s) held by more than one source row left out" in compared.stderr

    with sqlite3.connect(database) as connection:  # one row again: the key comes back
        connection.execute("DELETE FROM customers WHERE rowid = (SELECT max(rowid) FROM customers)")
    healed = matrix_sync(*run, stack=stack, cwd=tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert_tables_equal(config)


def test_column_names_bigquery_refuses_or_matrix_sync_uses_land_escaped(stack: LocalStack, tmp_path: Path,
                                                                         unique_name: str) -> None:
    database = tmp_path / "names.db"
    with sqlite3.connect(database) as connection:
        connection.execute('CREATE TABLE "odd names" (id int PRIMARY KEY, "first name" text, "_row_hash" text, '
                           '"_KEY_HASH" int, "größe" real, "1st" text, "select" text)')
        connection.executemany('INSERT INTO "odd names" VALUES (?, ?, ?, ?, ?, ?, ?)',
                               [(1, "a", "x", 7, 1.5, "p", "s"), (2, None, "y", None, 2.5, "q", None)])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"odd names": ["id"]},
                          suffix=unique_name)
    result = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_tables_equal(config)


def test_a_bucket_that_does_not_exist_is_named_in_one_line(stack: LocalStack, tmp_path: Path,
                                                           unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=5)
    write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                 suffix=unique_name)
    # the emulators from the environment, as for real Google Cloud: nothing is created for the config
    result = matrix_sync("extract", "--config", str(tmp_path / "config.yaml"), cwd=tmp_path, extra_env=stack.env())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (f"error: bucket gs://bucket-{unique_name} does not exist (writing snapshots/_locks/customers.json): "
            "check gcs.bucket in the config, or create it (infra/ does)") in result.stderr


def test_a_table_that_cannot_be_extracted_fails_alone(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=6)
    with sqlite3.connect(database) as connection:  # listed first: the tables after it must still sync
        connection.execute("DROP TABLE accounts")
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "customers": ["customer_id"]}, suffix=unique_name)
    reason = "accounts: not extracted, table 'accounts' not found in the source"

    extracted = matrix_sync("extract", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert extracted.returncode == 1, extracted.stdout + extracted.stderr
    assert "customers: full snapshot" in extracted.stdout
    assert reason in extracted.stderr and "Traceback" not in extracted.stderr

    cycle = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert cycle.returncode == 1, cycle.stdout + cycle.stderr
    rows = {line.split("│")[1].strip(): line for line in cycle.stdout.splitlines() if line.count("│") > 5}
    assert "applied" in rows["customers"] and "match" in rows["customers"] and "passed" in rows["customers"]
    assert "failed" in rows["accounts"] and "skipped" in rows["accounts"]
    assert reason in cycle.stderr and "not verified: accounts (not extracted, failed)" in cycle.stderr
    assert "Traceback" not in cycle.stderr
    assert_tables_equal(config.model_copy(update={"tables": [config.table("customers")]}))


def test_run_says_why_a_snapshot_was_refused(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=7)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                          suffix=unique_name)
    first = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    with sqlite3.connect(database) as connection:  # the loader does not drop columns on its own
        connection.execute("ALTER TABLE customers DROP COLUMN email")
    second = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "refused" in second.stdout
    assert "customers: refused, column(s) email of " in second.stderr
    assert ("dropping columns is not applied automatically; to take it, drop the BigQuery table: the next snapshot "
            "re-creates and reloads it") in second.stderr
    assert "not verified: customers (load refused)\n" in second.stderr
    status = matrix_sync("status", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert status.returncode == 1 and "│ refused (" in status.stdout, status.stdout + status.stderr
    assert status.stderr.strip() == "needs attention: customers"
    applied = ledger.latest_applied(config.bigquery.project, config.bigquery.dataset,
                                    f"{config.bigquery.project}.{config.bigquery.dataset}.customers")
    assert applied and str(applied["run_id"]) in status.stdout, "a run id is shown whole, even piped"

    bq.drop_table(f"{config.bigquery.project}.{config.bigquery.dataset}.customers")  # what the refusal says to do
    third = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert_tables_equal(config)


@pytest.mark.parametrize(("config_text", "message"), [
    ("source: {url: 'sqlite:///x.db'}\n", "pubsub: Field required"),
    ("source: {url: 'sqlite:///x.db', pasword: x}\ntables: []\n", "source.pasword: unknown key"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, config_text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(config_text)
    result = matrix_sync("run", "--config", str(tmp_path / "bad.yaml"), cwd=tmp_path,
                         extra_env={"MATRIX_STACK_DIR": str(tmp_path / "no-stack")})
    assert result.returncode == 2
    assert message in result.stderr and str(tmp_path / "bad.yaml") in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_source_is_one_line_without_the_password(tmp_path: Path, unique_name: str) -> None:
    write_config(tmp_path / "config.yaml", url="postgresql+psycopg2://etl@127.0.0.1:1/matrix",
                 tables={"customers": ["customer_id"]}, suffix=unique_name)
    result = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), cwd=tmp_path,
                         extra_env={"MATRIX_SOURCE__URL": "postgresql+psycopg2://etl:S3cretPw@127.0.0.1:1/matrix",
                                    "MATRIX_STACK_DIR": str(tmp_path / "no-stack"),
                                    "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:1"})
    assert result.returncode == 2, result.stderr
    assert "cannot connect to source" in result.stderr
    assert "S3cretPw" not in result.stderr + result.stdout
    assert "S3cretPw" not in (tmp_path / ".matrix-sync/logs/matrix-sync.jsonl").read_text()
    assert "Traceback" not in result.stderr


def test_stack_env_prints_exports_for_every_client(stack: LocalStack) -> None:
    result = matrix_sync("stack", "env", stack=stack)
    assert result.returncode == 0
    exports = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert exports["BIGQUERY_EMULATOR_HOST"] == f"http://127.0.0.1:{stack.ports.bigquery}"
    assert exports["STORAGE_EMULATOR_HOST"] == f"http://127.0.0.1:{stack.ports.gcs}"
    assert exports["PUBSUB_EMULATOR_HOST"] == f"127.0.0.1:{stack.ports.pubsub}"


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import socket
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = matrix_sync("stack", "up", cwd=tmp_path, extra_env={
            "MATRIX_STACK_DIR": str(tmp_path / "stack"), "MATRIX_STACK_PUBSUB_PORT": str(port)})
    assert result.returncode == 2
    assert f"port {port} (pubsub) is in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_extract_writes_snapshots_the_chain_then_loads(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=6)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"subscriptions": ["subscription_id"]}, suffix=unique_name)
    result = matrix_sync("extract", "--config", str(tmp_path / "config.yaml"), stack=stack, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "subscriptions: full snapshot" in result.stdout
    wait_for_applied(config, "subscriptions")
    assert_tables_equal(config)


def test_no_credentials_and_no_stack_is_one_line(tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny")
    write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                 suffix=unique_name)
    result = matrix_sync("extract", "--config", str(tmp_path / "config.yaml"), cwd=tmp_path,
                         extra_env={"MATRIX_STACK_DIR": str(tmp_path / "no-stack"), "HOME": str(tmp_path),
                                    "GOOGLE_APPLICATION_CREDENTIALS": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "credentials" in result.stderr.lower() and "Traceback" not in result.stderr


def test_a_table_the_emulator_cannot_hold_is_refused_at_once(stack: LocalStack, tmp_path: Path,
                                                             unique_name: str) -> None:
    """DECIMAL(38,4) needs BIGNUMERIC, which the BigQuery emulator answers with HTTP 500 at every
    CREATE: `run` used to wait out its whole timeout with the load pending and nothing said."""
    database = tmp_path / "wide.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE ledger_lines (id INTEGER PRIMARY KEY, amount DECIMAL(38,4), "
                           "qty DECIMAL(38,0), price NUMERIC(10,2))")
        connection.execute("INSERT INTO ledger_lines VALUES (1, 12.5, 3, 1.5)")
    write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"ledger_lines": ["id"]},
                 suffix=unique_name)
    result = matrix_sync("run", "--config", str(tmp_path / "config.yaml"), "--timeout", "60", stack=stack,
                         cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert "refused" in said and "amount (decimal(38, 4)), qty (decimal(38, 0))" in said
    assert "need BIGNUMERIC" in said and "price" not in said.split("need BIGNUMERIC")[0]


def test_create_tables_apply_creates_them_on_the_running_local_stack(stack: LocalStack, tmp_path: Path,
                                                                      unique_name: str) -> None:
    """As every command that reaches BigQuery: the running local stack, not Google Cloud without credentials."""
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=4)
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"accounts": ["account_id"], "payments": ["account_id", "payment_no"]},
                          suffix=unique_name)
    args = ("create-tables", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "ddl"), "--apply")

    first, second = (matrix_sync(*args, stack=stack, cwd=tmp_path) for _ in range(2))

    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 file(s) written, 0 unchanged" in first.stdout and "local stack" in first.stdout
    assert second.returncode == 0 and "0 file(s) written, 2 unchanged" in second.stdout, second.stdout
    assert "exists, left as it is" in second.stdout and "applied" not in second.stdout  # IF NOT EXISTS
    for table in ("accounts", "payments"):
        created = bq.get_table(f"{config.bigquery.project}.{config.bigquery.dataset}.{table}")
        assert created is not None and "account_id" in [f.name for f in created.schema]
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE accounts ADD COLUMN note_text TEXT")
    drifted = matrix_sync(*args, stack=stack, cwd=tmp_path)
    assert drifted.returncode == 0, drifted.stdout + drifted.stderr
    assert all(word in drifted.stdout for word in ("differs:", "note_text", "(missing)")), drifted.stdout


def test_create_tables_apply_on_the_local_stack_keeps_every_decimal_place(stack: LocalStack, tmp_path: Path,
                                                                         unique_name: str) -> None:
    """The emulator reads the DDL's plain NUMERIC as DECIMAL(18,3): values were rounded to three
    places and `run` still said applied, match, passed. A table the emulator cannot hold at all
    (BIGNUMERIC) is refused before anything is created."""
    database = tmp_path / "prices.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE prices (id INTEGER PRIMARY KEY, unit_price DECIMAL(12,4))")
        connection.executemany("INSERT INTO prices VALUES (?, ?)", [(1, "0.0001"), (2, "123456.7891")])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"prices": ["id"]},
                          suffix=unique_name)
    args = ("--config", str(tmp_path / "config.yaml"))
    created = matrix_sync("create-tables", *args, "--out", str(tmp_path / "ddl"), "--apply", stack=stack, cwd=tmp_path)
    assert created.returncode == 0, created.stdout + created.stderr
    ran = matrix_sync("run", *args, stack=stack, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    table = f"`{config.bigquery.project}.{config.bigquery.dataset}.prices`"
    held = {r["id"]: r["unit_price"] for r in bq.query(config.bigquery.project, f"SELECT * FROM {table}")}
    assert held == {1: Decimal("0.0001"), 2: Decimal("123456.7891")}

    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE ledger_lines (id INTEGER PRIMARY KEY, amount DECIMAL(38,4))")
    write_config(tmp_path / "wide.yaml", url=f"sqlite:///{database}", tables={"ledger_lines": ["id"]},
                 suffix=unique_name)
    wide = matrix_sync("create-tables", "--config", str(tmp_path / "wide.yaml"), "--out", str(tmp_path / "ddl"),
                       "--apply", stack=stack, cwd=tmp_path)
    assert wide.returncode == 2, wide.stdout + wide.stderr
    said = " ".join(wide.stderr.split())
    assert "nothing applied" in said and "amount (decimal(38, 4))" in said and "need BIGNUMERIC" in said
    assert bq.get_table(f"{config.bigquery.project}.{config.bigquery.dataset}.ledger_lines") is None


@pytest.mark.parametrize("command", [
    ["status"], ["compare-keys"], ["validate"], ["delete", "--table", "accounts", "--key", "account_id=1", "--yes"],
    ["truncate", "--table", "accounts", "--yes"], ["reconcile"], ["create-tables", "--apply"],
])
def test_no_credentials_and_no_local_stack_is_one_line_with_what_to_do(command: list[str], tmp_path: Path) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=5)
    write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"accounts": ["account_id"]},
                 suffix="nocreds")
    nowhere = {"MATRIX_STACK_DIR": str(tmp_path / "no-stack"), "GOOGLE_APPLICATION_CREDENTIALS": "",
               "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "NO_GCE_CHECK": "True"}

    result = matrix_sync(command[0], "--config", str(tmp_path / "config.yaml"), *command[1:], cwd=tmp_path,
                         extra_env=nowhere)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert line == f"error: {NO_CREDENTIALS}"


def test_no_credentials_off_google_cloud_prints_only_what_to_do(tmp_path: Path) -> None:
    """Off Google Cloud, google.auth first probes for a metadata server and warns that there is none;
    that warning goes to the log file, not before the one line that says what to do."""
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=5)
    write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}", tables={"accounts": ["account_id"]},
                 suffix="nocreds")
    nowhere = {"MATRIX_STACK_DIR": str(tmp_path / "no-stack"), "GOOGLE_APPLICATION_CREDENTIALS": "",
               "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}

    result = matrix_sync("status", "--config", str(tmp_path / "config.yaml"), cwd=tmp_path, extra_env=nowhere)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"error: {NO_CREDENTIALS}"], result.stderr
    logged = (tmp_path / ".matrix-sync" / "logs" / "matrix-sync.jsonl").read_text()
    assert "metadata server" in logged


def test_keys_the_source_tells_apart_but_bigquery_cannot_are_refused_then_heal(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """An untyped SQLite key holds 1 and '1', a DATETIME key two spellings of one instant, far apart
    in the source's order: each pair lands as one BigQuery key, which a MERGE cannot apply."""
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE codes (id PRIMARY KEY, v TEXT)")
        connection.executemany("INSERT INTO codes VALUES (?, ?)", [(1, "a"), (2, "b"), ("1", "c"), ("x", "d")])
        connection.execute("CREATE TABLE readings (at DATETIME PRIMARY KEY, v INT)")
        connection.executemany("INSERT INTO readings VALUES (?, ?)", [
            ("2024-01-01 00:00:00", 1), ("2024-01-01 00:00:00.5", 2), ("2024-01-01T00:00:00", 3)])
    config = write_config(tmp_path / "config.yaml", url=f"sqlite:///{database}",
                          tables={"codes": ["id"], "readings": ["at"]}, suffix=unique_name)
    run = ("run", "--config", str(tmp_path / "config.yaml"))

    refused = matrix_sync(*run, stack=stack, cwd=tmp_path)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "codes: refused, the snapshot holds rows the source tells apart that land as one BigQuery key (id='1')" \
        in refused.stderr
    assert "readings: refused, the snapshot holds rows the source tells apart that land as one BigQuery key " \
           "(at=datetime.datetime(2024, 1, 1, 0, 0))" in refused.stderr
    for table in ("codes", "readings"):
        assert bigquery_rows(config, table) == {}
    with sqlite3.connect(database) as connection:
        connection.execute("DELETE FROM codes WHERE id = '1'")
        connection.execute("DELETE FROM readings WHERE at = '2024-01-01T00:00:00'")
    healed = matrix_sync(*run, stack=stack, cwd=tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert_tables_equal(config)


def test_names_holding_brackets_are_shown_as_written(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    """Square brackets quote a name part in the config, and rich would take them for its markup:
    `main.[order.items]` was shown as `main.`, and a `[/x]` typed by a user ended in a traceback."""
    database = tmp_path / "source.db"
    with sqlite3.connect(database) as connection:
        connection.execute('CREATE TABLE "order.items" (id INTEGER PRIMARY KEY, v TEXT)')
        connection.execute("INSERT INTO \"order.items\" VALUES (1, 'a'), (2, '[b]')")
    config = str(tmp_path / "config.yaml")
    write_config(Path(config), url=f"sqlite:///{database}", tables={"main.[order.items]": ["id"]}, suffix=unique_name)

    run = matrix_sync("run", "--config", config, stack=stack, cwd=tmp_path)
    status = matrix_sync("status", "--config", config, stack=stack, cwd=tmp_path)
    refused = matrix_sync("delete", "--config", config, "--table", "[/x]", "--key", "id=1", "--yes", stack=stack,
                          cwd=tmp_path)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "extract main.[order.items]" in run.stdout and "│ main.[order.items] │ full" in run.stdout
    assert status.returncode == 0 and "│ main.[order.items] │" in status.stdout
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ") and "'[/x]'" in refused.stderr
