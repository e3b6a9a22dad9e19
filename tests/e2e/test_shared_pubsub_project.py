"""Deployments sharing one Pub/Sub project on the local stack (as the prober's A, B and C did): one
`extract-requests` topic, one `extractor-pull` subscription and one set of dead-letter
subscriptions serve them all. A and B share a bucket (prefixes dep-a, dep-b) and a dataset; C has
its own bucket and dataset. Each request, repair and dead letter reaches only its own deployment."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared.clients import publisher
from shared.config import Config, load_config
from shared.topology import MANIFEST_NAME, RECONCILIATION_TABLE, dead_letter_topic
from tests.e2e.test_cli import matrix_sync
from tests.support import assert_tables_equal, ensure_resources, wait_for_applied
from tests.support_reconcile import execute, republish_loaded, wait_for_rows

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def deployment(stack: LocalStack, path: Path, *, project: str, bucket: str, dataset: str,
               tables: dict[str, list[str]], seed: int, prefix: str | None = None) -> Config:
    """A deployment of the tiny sample database beside `path`, its config at `path`, created in `stack`."""
    database = path.with_suffix(".db")
    sample.create_sample(database, "tiny", seed=seed)
    path.write_text(yaml.safe_dump({
        "source": {"url": f"sqlite:///{database}"},
        "tables": [{"name": name, "key": key} for name, key in tables.items()],
        "gcs": {"bucket": bucket} | ({"prefix": prefix} if prefix else {}),
        "bigquery": {"project": project, "dataset": dataset},
        "pubsub": {"project": project},
        "run": {"wait_timeout_s": 120},
    }))
    config = load_config(path)
    ensure_resources(stack, config)
    return config


def agent(path: Path, stack: LocalStack, *args: str) -> str:
    served = matrix_sync("agent", "--config", str(path), *args, stack=stack, cwd=path.parent)
    assert served.returncode == 0, served.stdout + served.stderr
    return served.stdout


def test_a_request_is_handled_by_its_own_deployments_agent_whoever_pulls_first(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """B's agent pulled A's requests and dropped one naming a table only A has (acknowledged: lost)
    and ran A's "all tables" request on B's tables."""
    project, bucket, dataset = f"proj-{unique_name}", f"shared-{unique_name}", f"ds_{unique_name}"
    config_a = deployment(stack, tmp_path / "a.yaml", project=project, bucket=bucket, dataset=dataset, prefix="dep-a",
                          tables={"accounts": ["account_id"], "payments": ["account_id", "payment_no"]}, seed=31)
    deployment(stack, tmp_path / "b.yaml", project=project, bucket=bucket, dataset=f"{dataset}_b", prefix="dep-b",
               tables={"payments": ["account_id", "payment_no"]}, seed=32)
    for tables in (["--table", "accounts"], []):
        requested = matrix_sync("request", "--config", str(tmp_path / "a.yaml"), *tables, stack=stack, cwd=tmp_path)
        assert requested.returncode == 0, requested.stderr

    by_b = agent(tmp_path / "b.yaml", stack, "--once")
    assert "handled 0 request(s)" in by_b and "snapshot" not in by_b
    by_b = agent(tmp_path / "b.yaml", stack, "--idle-timeout", "3")  # a daemon too leaves them there
    assert "handled 0 request(s)" in by_b and "snapshot" not in by_b

    by_a = agent(tmp_path / "a.yaml", stack, "--idle-timeout", "5")
    assert "handled 2 request(s)" in by_a, by_a
    assert by_a.count("  accounts: ") == 2 and by_a.count("  payments: ") == 1, by_a
    wait_for_applied(config_a, "accounts")
    wait_for_applied(config_a, "payments")
    assert "handled 0 request(s)" in agent(tmp_path / "b.yaml", stack, "--once"), "nothing is left for B"


def test_a_reconciler_repair_goes_to_the_deployment_whose_snapshot_it_repairs(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """C shares only the Pub/Sub project with A: A's agent ran C's repair on A's `customers`, and
    C's table stayed short."""
    project = f"proj-{unique_name}"
    deployment(stack, tmp_path / "a.yaml", project=project, bucket=f"a-{unique_name}", dataset=f"a_{unique_name}",
               prefix="dep-a", tables={"customers": ["customer_id"]}, seed=33)
    config_c = deployment(stack, tmp_path / "c.yaml", project=project, bucket=f"c-{unique_name}",
                          dataset=f"c_{unique_name}", tables={"customers": ["customer_id"]}, seed=34)
    (extracted,) = extract_all(config_c)
    (report,) = wait_for_chain(config_c, [extracted], timeout_s=120)
    assert (report.load_status, report.reconciliation) == ("applied", "match"), report

    execute(config_c, "DELETE FROM {t:customers} WHERE customer_id = 3")  # behind the pipeline's back
    republish_loaded(config_c, "customers", extracted.run_id, extracted.manifest_uri)
    repaired = wait_for_rows(config_c, RECONCILIATION_TABLE, extracted.run_id, 2)[-1]
    assert (repaired["missing_rows"], repaired["keys_requested"]) == (1, 1)

    by_a = agent(tmp_path / "a.yaml", stack, "--once")
    assert "handled 0 request(s)" in by_a and "snapshot" not in by_a
    by_c = agent(tmp_path / "c.yaml", stack, "--once")
    assert "handled 1 request(s)" in by_c and "customers: full snapshot" in by_c

    deadline = time.monotonic() + 120
    while True:
        try:
            assert_tables_equal(config_c)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def publish_dead_letter(project: str, function: str, body: dict[str, object], **attributes: str) -> None:
    """What Pub/Sub forwards to a dead-letter topic after a subscription's last attempt."""
    attributes |= {"CloudPubSubDeadLetterSourceSubscription": f"{function}-push",
                   "CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    topic = publisher().topic_path(project, dead_letter_topic(function))
    publisher().publish(topic, json.dumps(body).encode(), **attributes).result(timeout=30)


def loader_letter(project: str, bucket: str, name: str) -> None:
    publish_dead_letter(project, "loader", {"bucket": bucket, "name": name, "kind": "storage#object"},
                        bucketId=bucket, objectId=name, eventType="OBJECT_FINALIZE")


def test_dead_letters_of_a_deployment_sharing_the_bucket_and_dataset_are_left_to_it(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """A's `dead-letters --discard --yes` dropped B's loader letter (same bucket, prefix dep-b), and
    could not tell B's reconciler and validator letters (same dataset) from its own."""
    project, bucket, dataset = f"proj-{unique_name}", f"shared-{unique_name}", f"ds_{unique_name}"
    for name, prefix in (("a", "dep-a"), ("b", "dep-b")):
        deployment(stack, tmp_path / f"{name}.yaml", project=project, bucket=bucket, dataset=dataset, prefix=prefix,
                   tables={"customers": ["customer_id"]}, seed=35)
    theirs_run, ours_run = f"20261207T120000000001Z-b{unique_name[:5]}", f"20261207T120000000001Z-a{unique_name[:5]}"
    loader_letter(stack.project, bucket, f"dep-b/customers/{theirs_run}/{MANIFEST_NAME}")
    loader_letter(stack.project, bucket, f"dep-a/customers/{ours_run}/{MANIFEST_NAME}")
    for function in ("reconciler", "validator"):
        table = f"{project}.{dataset}.customers"
        publish_dead_letter(project, function, {"table": table, "run_id": theirs_run, "status": "applied",
                                                "manifest_uri": f"gs://{bucket}/dep-b/customers/{theirs_run}/"
                                                                f"{MANIFEST_NAME}"}, table=table)

    def dead_letters(name: str, *args: str) -> str:
        shown = matrix_sync("dead-letters", "--config", str(tmp_path / f"{name}.yaml"), *args, stack=stack,
                            cwd=tmp_path)
        return shown.stdout + shown.stderr

    listed_by_a = dead_letters("a")
    assert ours_run in listed_by_a and theirs_run not in listed_by_a
    assert "waiting: 1" in listed_by_a
    discarded_by_a = dead_letters("a", "--discard", "--yes")
    assert "discarded: 1" in discarded_by_a and theirs_run not in discarded_by_a

    listed_by_b = dead_letters("b")
    assert "waiting: 3" in listed_by_b and ours_run not in listed_by_b
    assert listed_by_b.count(theirs_run) == 3
    assert "discarded: 3" in dead_letters("b", "--discard", "--yes")
