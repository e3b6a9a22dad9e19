"""No output of a real cycle holds the source password: with the password in the source URL (from
the environment), in MATRIX_SOURCE__PASSWORD of every process, and in a connection string that
fails, every log of every process, every object in the bucket, every ledger/results row in BigQuery
and every published message is scanned for it."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from shared import bigquery as bq
from shared.clients import publisher, storage_client, subscriber
from shared.config import PASSWORD_VARIABLE
from shared.identifiers import quote_bigquery
from shared.topology import ALERTS_TOPIC, LEDGER_TABLE, RECONCILIATION_TABLE, TABLE_LOADED_TOPIC, VALIDATION_TABLE
from tests.reliability.harness import FaultStack
from tests.support import write_config

pytestmark = pytest.mark.stack

TABLE = "secret_scan_source"
FUNCTION_SERVERS = ("loader", "reconciler", "validator")


def _postgres(sql: str) -> None:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection, connection.cursor() as cur:
        cur.execute(sql)


@pytest.fixture
def password(fault_stack: FaultStack) -> Iterator[str]:
    """A password no test data could contain by chance, in every function server's environment."""
    value = "Pw" + secrets.token_hex(12)
    for service in FUNCTION_SERVERS:
        fault_stack.restart(service, {PASSWORD_VARIABLE: value})
    yield value
    for service in FUNCTION_SERVERS:
        fault_stack.restart(service)


def _messages(project: str, topic: str) -> str:
    """A pull subscription made before the run, so it holds every message published during it."""
    return subscriber().create_subscription(request={
        "name": subscriber().subscription_path(project, f"scan-{topic}-{uuid.uuid4().hex[:6]}"),
        "topic": publisher().topic_path(project, topic)}).name


def _drain(subscription: str) -> list[str]:
    texts = []
    while True:
        response = subscriber().pull(request={"subscription": subscription, "max_messages": 100,
                                              "return_immediately": True}, timeout=10)
        if not response.received_messages:
            return texts
        texts += [m.message.data.decode(errors="replace") + json.dumps(dict(m.message.attributes))
                  for m in response.received_messages]
        subscriber().acknowledge(request={"subscription": subscription,
                                          "ack_ids": [m.ack_id for m in response.received_messages]})


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "matrix_sync.cli", *args], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=300)


def test_no_output_of_a_cycle_holds_the_password(fault_stack: FaultStack, password: str, tmp_path: Path) -> None:
    stack = fault_stack.stack
    _postgres(f"DROP TABLE IF EXISTS {TABLE}")
    _postgres(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text, note text)")
    _postgres(f"INSERT INTO {TABLE} SELECT n, 'name ' || n, CASE WHEN n % 7 = 0 THEN NULL ELSE 'x' END "
              "FROM generate_series(1, 50) AS n")
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, url="postgresql+psycopg2://postgres@127.0.0.1:5432/test", tables={TABLE: ["id"]},
                          suffix=f"secrets{uuid.uuid4().hex[:6]}")
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    inboxes = [_messages(config.pubsub.project, topic) for topic in (TABLE_LOADED_TOPIC, ALERTS_TOPIC)]
    repo = Path(__file__).resolve().parents[2]
    base = {**os.environ, "MATRIX_STACK_DIR": str(stack.root), "PYTHONPATH": str(repo)}

    def cycle(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return _cli(["--log-file", str(tmp_path / "logs" / f"{name}.jsonl"), "run", "--config", str(config_path)],
                    {**base, **env}, tmp_path)

    in_url = cycle("url", {"MATRIX_SOURCE__URL": f"postgresql+psycopg2://postgres:{password}@127.0.0.1:5432/test"})
    assert in_url.returncode == 0, in_url.stdout[-2000:] + in_url.stderr[-2000:]
    _postgres(f"UPDATE {TABLE} SET name = 'changed' WHERE id % 5 = 0")
    in_variable = cycle("variable", {PASSWORD_VARIABLE: password})
    assert in_variable.returncode == 0, in_variable.stdout[-2000:] + in_variable.stderr[-2000:]
    failing = cycle("failing", {"MATRIX_SOURCE__URL": f"postgresql+psycopg2://etl:{password}@127.0.0.1:1/matrix"})
    assert failing.returncode != 0

    outputs: dict[str, str] = {f"{name} run stdout/stderr": done.stdout + done.stderr
                               for name, done in (("url", in_url), ("variable", in_variable), ("failing", failing))}
    for log in [*(stack.root / "logs").glob("*.log"), *(tmp_path / "logs").glob("*")]:
        outputs[str(log)] = log.read_text(errors="replace")
    for blob in storage_client().list_blobs(config.gcs.bucket):
        outputs[f"gs://{config.gcs.bucket}/{blob.name}"] = blob.download_as_bytes().decode("latin-1")
    for table in (LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE):
        name = quote_bigquery(config.bigquery.project, config.bigquery.dataset, table)
        rows = bq.query(config.bigquery.project, f"SELECT * FROM {name}")
        outputs[table] = json.dumps([dict(row.items()) for row in rows], default=str)
    for inbox in inboxes:
        outputs[inbox] = "\n".join(_drain(inbox))

    # the scan must have seen this run everywhere it looks
    run_id = json.loads(outputs[LEDGER_TABLE])[0]["run_id"]
    assert run_id in outputs[inboxes[0]]
    assert any(run_id in text for name, text in outputs.items() if name.endswith(".log"))
    assert any(name.endswith("_manifest.json") for name in outputs)
    assert "127.0.0.1:1" in outputs["failing run stdout/stderr"] + outputs[str(tmp_path / "logs" / "failing.jsonl")]
    leaks = [name for name, text in outputs.items() if password in text]
    assert leaks == [], f"the password appears in {leaks}"
