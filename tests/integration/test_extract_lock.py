"""One extraction per table at a time, against fake-gcs-server: a second extraction of a locked table
is skipped and reported, an expired lease is taken over, a crashed holder's lease is taken over at
once on its own machine and expires elsewhere, a failed extraction releases its lock, and snapshot
sequences rise under the lock whatever the clocks."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.clients import storage_client
from shared.config import Config
from shared.events import StorageObject
from shared.extractor import snapshot
from shared.extractor.lock import LeaseLost, TableLocked, acquire, lock_name, read_lease, utc_now
from shared.extractor.run import Extraction, ExtractProgress, FailedTable, extract
from shared.manifest import parse_manifest
from shared.topology import MANIFEST_NAME
from tests.support import write_config

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
TABLE = "customers"
WAIT_S = 120  # a bound on every wait, never a duration the test depends on


@pytest.fixture
def config(stack: LocalStack, tmp_path: Path, unique_name: str) -> Config:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=5)
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={TABLE: ["customer_id"]},
                          suffix=unique_name, chunk_rows=5)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    return config


def manifests(config: Config) -> list[str]:
    return [b.name for b in storage_client().list_blobs(config.gcs.bucket) if b.name.endswith(MANIFEST_NAME)]


def lock_of(config: Config) -> str:
    return lock_name(config.gcs.prefix, config.table(TABLE).target_table)


class HeldOpen(ExtractProgress):
    """Keeps the first extraction inside its lock until the second one has finished."""

    def __init__(self) -> None:
        self.extracting = threading.Event()
        self.may_finish = threading.Event()

    def rows(self, table: str, count: int) -> None:
        self.extracting.set()
        assert self.may_finish.wait(WAIT_S)


def test_concurrent_extractions_of_a_table_write_one_manifest_and_report_the_other_as_locked(
        config: Config, log_stream: io.StringIO) -> None:
    held = HeldOpen()
    first: list[Extraction] = []
    thread = threading.Thread(target=lambda: first.append(extract(config, [TABLE], held, force_full=True)))
    thread.start()
    try:
        assert held.extracting.wait(WAIT_S)
        holder = read_lease(config.gcs.bucket, lock_of(config))
        second = extract(config, [TABLE], force_full=True)
    finally:
        held.may_finish.set()
        thread.join(WAIT_S)
    assert holder is not None and not holder.released
    assert second.written == [] and [t.table for t in second.locked] == [TABLE]
    assert (second.locked[0].holder, second.locked[0].host) == (holder.holder, holder.host)
    assert len(first) == 1 and len(first[0].written) == 1 and first[0].locked == []
    assert manifests(config) == [first[0].written[0].manifest_uri.split("/", 3)[3]]

    skipped = [json.loads(line) for line in log_stream.getvalue().splitlines() if '"outcome": "locked"' in line]
    assert len(skipped) == 1 and skipped[0]["severity"] == "WARNING"
    assert skipped[0]["fields"]["holder"] == holder.holder and TABLE in skipped[0]["message"]
    released = read_lease(config.gcs.bucket, lock_of(config))
    assert released is not None and released.released and released.holder == holder.holder
    lock_object = StorageObject(config.gcs.bucket, lock_of(config), str(released.generation), "OBJECT_FINALIZE")
    assert not lock_object.is_manifest, "the loader must ignore the lock object"


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_neither_renew_nor_release_it(config: Config) -> None:
    name, bucket = lock_of(config), config.gcs.bucket
    old = acquire(bucket, name, TABLE, "old-holder", lease_s=60)
    with pytest.raises(TableLocked) as locked:
        acquire(bucket, name, TABLE, "too-early", lease_s=60)
    assert locked.value.holder.holder == "old-holder"

    new = acquire(bucket, name, TABLE, "new-holder", lease_s=60, clock=lambda: utc_now() + timedelta(seconds=61))
    assert new.generation != old.generation
    old.check()  # a holder paused past its lease: its renewer has not noticed yet
    with pytest.raises(LeaseLost):
        old.next_sequence()  # ... but no manifest sequence is issued to it
    with pytest.raises(LeaseLost):
        old.renew()
    with pytest.raises(LeaseLost):
        old.check()
    old.release()
    current = read_lease(bucket, name)
    assert current is not None and (current.holder, current.released) == ("new-holder", False)

    new.renew()
    new.release()
    current = read_lease(bucket, name)
    assert current is not None and (current.holder, current.released) == ("new-holder", True)
    acquire(bucket, name, TABLE, "next", lease_s=60).release()  # a released lease is free at once


CRASHING_HOLDER = """
import os, sys
from shared.extractor.lock import table_lock
with table_lock(sys.argv[1], sys.argv[2], sys.argv[3], "crashed-holder", 300):
    os._exit(0)  # dies holding the lease: no release, no renewal
"""


def crash_holding_the_lease(config: Config) -> None:
    done = subprocess.run([sys.executable, "-c", CRASHING_HOLDER, config.gcs.bucket, config.gcs.prefix,
                           config.table(TABLE).target_table], cwd=ROOT, capture_output=True, text=True,
                          timeout=WAIT_S, check=False)
    assert done.returncode == 0, done.stderr


def test_a_crashed_holder_on_this_machine_is_taken_over_at_once(config: Config,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Waiting out the lease of a process known dead would skip, and acknowledge, every request for
    the table meanwhile (5 minutes by default)."""
    crash_holding_the_lease(config)
    lease = read_lease(config.gcs.bucket, lock_of(config))
    assert lease is not None and not lease.released and lease.expires_at > utc_now() and lease.holder_gone()
    outcome = extract(config, [TABLE], force_full=True)
    assert [r.table for r in outcome.written] == [TABLE] and outcome.locked == []
    assert "took over the extraction lock of customers from extraction crashed-holder" in caplog.text
    assert "whose process is gone" in caplog.text


def test_a_crashed_holders_lease_on_another_machine_expires(config: Config) -> None:
    crash_holding_the_lease(config)
    blob = storage_client().bucket(config.gcs.bucket).get_blob(lock_of(config))
    assert blob is not None
    blob.metadata = {**(blob.metadata or {}), "host": "etl02.corp"}  # a holder whose process cannot be seen
    blob.patch()
    while_held = extract(config, [TABLE], force_full=True)
    assert while_held.written == [] and while_held.locked[0].holder == "crashed-holder"
    assert manifests(config) == []

    after_expiry = extract(config, [TABLE], force_full=True,
                           clock=lambda: utc_now() + timedelta(seconds=config.extract.lock_lease_s + 1))
    assert [r.table for r in after_expiry.written] == [TABLE] and after_expiry.locked == []
    assert len(manifests(config)) == 1


TERMINATED_HOLDER = """
import signal, sys, time
from matrix_sync.cli import _exit_on_terminate
from shared.extractor.lock import table_lock
signal.signal(signal.SIGTERM, _exit_on_terminate)  # as `matrix-sync` installs it
with table_lock(sys.argv[1], sys.argv[2], sys.argv[3], "stopped-holder", 300):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_holder_stopped_by_sigterm_releases_its_lease(config: Config) -> None:
    """`systemctl stop` of the agent mid-extraction: Python's default SIGTERM skipped the release,
    and the table stayed locked until the lease expired."""
    holder = subprocess.Popen([sys.executable, "-c", TERMINATED_HOLDER, config.gcs.bucket, config.gcs.prefix,
                               config.table(TABLE).target_table], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=WAIT_S) == 128 + signal.SIGTERM
    lease = read_lease(config.gcs.bucket, lock_of(config))
    assert lease is not None and (lease.holder, lease.released) == ("stopped-holder", True)
    assert [r.table for r in extract(config, [TABLE, TABLE], force_full=True).written] == [TABLE]  # named twice


def test_the_lock_is_released_when_the_extraction_fails(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    real_stream = snapshot.stream_rows

    def dying_stream(*args: object, **kwargs: object) -> Iterator[list[tuple]]:
        for number, chunk in enumerate(real_stream(*args, **kwargs)):
            if number == 1:
                raise ConnectionResetError("source went away")
            yield chunk

    monkeypatch.setattr(snapshot, "stream_rows", dying_stream)
    failed = extract(config, [TABLE], force_full=True)
    assert failed.written == [] and failed.failed == [
        FailedTable(TABLE, "ConnectionResetError: source went away", unexpected=True)]
    lease = read_lease(config.gcs.bucket, lock_of(config))
    assert lease is not None and lease.released
    monkeypatch.setattr(snapshot, "stream_rows", real_stream)
    retried = extract(config, [TABLE], force_full=True)
    assert len(retried.written) == 1 and retried.locked == []


def test_the_cli_and_the_agent_report_a_locked_table(stack: LocalStack, config: Config, tmp_path: Path) -> None:
    from tests.e2e.test_cli import matrix_sync

    path = str(tmp_path / "c.yaml")
    held = acquire(config.gcs.bucket, lock_of(config), TABLE, "other-holder", lease_s=300)
    try:
        extracted = matrix_sync("extract", "--config", path, "--full", stack=stack, cwd=tmp_path)
        assert matrix_sync("request", "--config", path, stack=stack, cwd=tmp_path).returncode == 0
        served = matrix_sync("agent", "--config", path, "--once", stack=stack, cwd=tmp_path)
        cycle = matrix_sync("run", "--config", path, stack=stack, cwd=tmp_path)
    finally:
        held.release()
    assert extracted.returncode == 1, extracted.stdout + extracted.stderr
    assert f"{TABLE}: skipped, locked by extraction other-holder" in extracted.stdout
    assert "Traceback" not in extracted.stderr and TABLE in extracted.stderr
    assert served.returncode == 0, served.stderr
    assert f"{TABLE}: skipped, locked by extraction other-holder" in served.stdout
    assert cycle.returncode != 0 and "locked" in cycle.stdout and "not verified: customers (not extracted, locked)" in cycle.stderr
    assert manifests(config) == []


def test_snapshot_sequences_keep_rising_when_a_clock_falls_behind(config: Config) -> None:
    """Sequences order snapshots for the loader, which refuses one older than the last applied as a
    late delivery. Taken from each host's clock alone, a snapshot written by a host an hour behind
    (the on-prem agent after the extractor function, or after its clock was stepped back) came out
    older than the one before it, and the newer data would have been refused as stale."""
    (first,) = extract(config, force_full=True).written
    behind = extract(config, force_full=True, clock=lambda: utc_now() - timedelta(hours=1))
    (second,) = behind.written
    first_sequence, second_sequence = (parse_manifest(
        gcs.read(config.gcs.bucket, result.manifest_uri.split("/", 3)[3]), bucket=config.gcs.bucket,
        prefix=config.gcs.prefix).sequence for result in (first, second))
    assert second_sequence == first_sequence + 1
    assert read_lease(config.gcs.bucket, lock_of(config)).sequence == second_sequence  # type: ignore[union-attr]
    lease = acquire(config.gcs.bucket, lock_of(config), TABLE, "later", lease_s=60)
    issued = lease.next_sequence()
    assert issued > second_sequence  # on time again: the clock's own
    assert read_lease(config.gcs.bucket, lock_of(config)).sequence == issued  # type: ignore[union-attr]
