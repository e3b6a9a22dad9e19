"""The fault matrix: every service of the local stack (GCS, Pub/Sub, BigQuery emulators; loader,
reconciler, validator servers) crashed and restarted at each step of a change cycle, plus the
extractor killed mid-table, the source dropping the connection mid-stream and BigQuery stalling.

Each cell owns one table of a shared source. It runs a change cycle with the fault injected, then
the next cycle, and asserts that BigQuery equals the source row by row, that the ledger accounts
for every snapshot exactly once (applied once, stale, or superseded by a re-extraction), and that
nothing is stuck (no dead letters, every applied snapshot announced, the last one reconciled)."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from matrix_sync.cycle import wait_for_chain
from shared import gcs
from shared.config import Config
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.run import extract, extract_tables
from shared.extractor.snapshot import ExtractResult
from shared.extractor.source import SourceLost
from shared.topology import MANIFEST_NAME
from tests.reliability.harness import (
    CHUNK_ROWS,
    FaultStack,
    create_table,
    dead_letters,
    ledger_problems,
    ledger_rows,
    manifests,
    mutate,
    settle,
)
from tests.support import assert_tables_equal, write_config

pytestmark = pytest.mark.stack

SERVICES = ("gcs", "pubsub", "bigquery", "loader", "reconciler", "validator")
EXTRACTOR_POINTS = ("mid_upload", "before_manifest")      # in the extractor, between its uploads
LOADER_POINTS = ("mid_load", "mid_merge", "before_publish")  # where loader_hook holds the loader
POINTS = EXTRACTOR_POINTS + LOADER_POINTS
OTHER_FAULTS = ("extractor_killed_mid_table", "source_connection_terminated", "bigquery_stalled_mid_load")
CELLS = [f"{service}-{point}" for service, point in itertools.product(SERVICES, POINTS)] + list(OTHER_FAULTS)
# Cells whose faulted snapshot is never applied: its notification dies with the Pub/Sub emulator
# (which keeps nothing), or no manifest is ever written. The next cycle's snapshot supersedes it.
NOT_APPLIED = {"pubsub-mid_merge", *OTHER_FAULTS[:2]}
SUFFIX = "faults"
POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Source:
    database: Path
    configs: dict[str, Config]
    paths: dict[str, Path]


def table_name(cell: str) -> str:
    return "t_" + cell.replace("-", "_")


@pytest.fixture(scope="module")
def source(fault_stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """One SQLite source with a table per cell, all synced once before the first cell runs."""
    workdir = tmp_path_factory.mktemp("fault-source")
    database = workdir / "matrix.db"
    sqlite_cells = [cell for cell in CELLS if cell != "source_connection_terminated"]
    for cell in sqlite_cells:
        create_table(database, table_name(cell))
    url = f"sqlite:///{database}"
    paths = {cell: workdir / f"{table_name(cell)}.yaml" for cell in sqlite_cells}
    configs = {cell: write_config(paths[cell], url=url, tables={table_name(cell): ["id"]}, suffix=SUFFIX,
                                  chunk_rows=CHUNK_ROWS) for cell in sqlite_cells}
    everything = write_config(workdir / "all.yaml", url=url, tables={table_name(c): ["id"] for c in sqlite_cells},
                              suffix=SUFFIX, chunk_rows=CHUNK_ROWS)
    fault_stack.stack.ensure_resources(bucket=everything.gcs.bucket, bigquery_project=everything.bigquery.project,
                                       dataset=everything.bigquery.dataset, pubsub_project=everything.pubsub.project)
    reports = wait_for_chain(everything, extract_tables(everything), timeout_s=240, poll_s=0.5)
    assert all(r.ok for r in reports), [r for r in reports if not r.ok]
    return Source(database, configs, paths)


@contextmanager
def uploads_calling(monkeypatch: pytest.MonkeyPatch, point: str, action: Callable[[], None]) -> Iterator[None]:
    """The in-process extractor's uploads, with `action` run right after the second object
    (mid_upload: more parts follow) or right before the manifest (before_manifest) or the first part."""
    real = gcs.upload
    count = 0

    def upload(bucket: str, name: str, data: bytes, content_type: str, *, only_if_new: bool = False) -> gcs.ObjectInfo:
        nonlocal count
        if point == "before_manifest" and name.endswith("/" + MANIFEST_NAME):
            action()
        stored = real(bucket, name, data, content_type, only_if_new=only_if_new)
        count += 1
        if (point, count) in (("mid_upload", 2), ("after_first_part", 1)):
            action()
        return stored

    with monkeypatch.context() as patch:
        patch.setattr(gcs, "upload", upload)
        yield


def crash_during_cycle(faults: FaultStack, config: Config, service: str, point: str,
                       monkeypatch: pytest.MonkeyPatch) -> list[ExtractResult]:
    """One change cycle with `service` crashed and restarted at `point`; returns what was extracted."""
    if point in EXTRACTOR_POINTS:
        with uploads_calling(monkeypatch, point, lambda: faults.crash(service)):
            return extract_tables(config)
    faults.arm(point)
    try:
        extracted = extract_tables(config)
        faults.wait_reached()
        if service == "loader":  # a crashed loader has nothing to release; Pub/Sub redelivers to the new one
            faults.crash_while_pushing(service)
        else:
            faults.crash(service)
            faults.release()
        return extracted
    finally:
        (faults.control / "armed").unlink(missing_ok=True)


def stall_bigquery_mid_load(faults: FaultStack, config: Config) -> list[ExtractResult]:
    """BigQuery stops answering (connections stay open) while the loader goes from staging to MERGE."""
    faults.arm("mid_load")
    extracted = extract_tables(config)
    faults.wait_reached()
    faults.stack.freeze("bigquery")
    try:
        faults.release()
        time.sleep(3)  # the stall itself: the loader's MERGE request waits on a silent BigQuery
    finally:
        faults.stack.freeze("bigquery", frozen=False)
    return extracted


def extract_once_holder_gone(config: Config) -> list[ExtractResult]:
    """The dead extractor ran on this machine: its lease is taken over at once, not waited out."""
    outcome = extract(config)
    assert outcome.locked == [] and outcome.written, outcome
    return outcome.written


def kill_extractor_mid_table(config_path: Path) -> list[ExtractResult]:
    script = Path(__file__).with_name("extract_and_die.py")
    done = subprocess.run([sys.executable, str(script), str(config_path)], env=dict(os.environ),
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode(errors="replace")[-2000:]
    return []


# --- the PostgreSQL cell: the source goes away mid-stream ---------------------------------------

POSTGRES_TABLE = "fault_source_gone"
APPLICATION = "matrix-fault-matrix"
# The reader runs one chunk ahead and the uploads up to two parts behind the writer, so the drop
# after the first part lands at most about 15 chunks into the table: enough rows that the stream
# is still open then (at 60 rows the whole result was sometimes read before the first upload ended).
POSTGRES_ROWS = 400


def _postgres(sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def postgres_source(workdir: Path) -> Config:
    _postgres(f"DROP TABLE IF EXISTS {POSTGRES_TABLE}")
    _postgres(f"CREATE TABLE {POSTGRES_TABLE} (id integer PRIMARY KEY, name text, amount numeric(10,2), "
              "seen timestamp)")
    _postgres(f"INSERT INTO {POSTGRES_TABLE} SELECT n, 'row ' || n, n * 1.25, "
              "timestamp '2024-01-01' + n * interval '1 h' FROM generate_series(1, %s) AS n", (POSTGRES_ROWS,))
    return write_config(workdir / "postgres.yaml", url=f"{POSTGRES_URL}?application_name={APPLICATION}",
                        tables={POSTGRES_TABLE: ["id"]}, suffix=SUFFIX, chunk_rows=CHUNK_ROWS)


def mutate_postgres(cycle: int) -> None:
    _postgres(f"UPDATE {POSTGRES_TABLE} SET amount = amount + 1, name = %s WHERE mod(id, 4) = %s",
              (f"cycle {cycle}", cycle % 4))
    _postgres(f"DELETE FROM {POSTGRES_TABLE} WHERE mod(id, 9) = %s", (cycle % 9,))
    _postgres(f"INSERT INTO {POSTGRES_TABLE} SELECT 1000 * %s + n, 'new', n, timestamp '2024-02-01' "
              "FROM generate_series(0, 5) AS n", (cycle,))


def terminate_extractor_connection() -> None:
    killed = _postgres("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                       (APPLICATION,))
    assert killed and all(row[0] for row in killed), "no streaming connection of the extractor to terminate"


def drop_source_mid_stream(config: Config, monkeypatch: pytest.MonkeyPatch) -> list[ExtractResult]:
    # Through the DBAPI reader, SQL Server's (pymssql): the Arrow reader resumes after a dropped
    # connection instead (tests/integration/test_arrow_reader.py), and on a table this small it has
    # the whole result before the first part is uploaded.
    with monkeypatch.context() as patch:
        patch.setenv(READER_ENV, "dbapi")
        with uploads_calling(monkeypatch, "after_first_part", terminate_extractor_connection):
            # the request ends as when the source cannot be reached: whoever asked delivers it again
            with pytest.raises(SourceLost, match="terminat|closed the connection"):
                extract(config)
    return []


# --- the matrix ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_fault_then_next_cycle_converges(cell: str, fault_stack: FaultStack, source: Source,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = fault_stack.stack
    if cell == "source_connection_terminated":
        config = postgres_source(tmp_path)
        assert settle(config, extract_tables(config)).ok
        change: Callable[[int], None] = mutate_postgres
    else:
        config = source.configs[cell]
        change = lambda cycle: mutate(source.database, table_name(cell), cycle)  # noqa: E731
    table = config.tables[0].name
    target = config.tables[0].target_table
    before = manifests(config, target)

    change(1)
    if cell == "extractor_killed_mid_table":
        extracted = kill_extractor_mid_table(source.paths[cell])
    elif cell == "source_connection_terminated":
        extracted = drop_source_mid_stream(config, monkeypatch)
    elif cell == "bigquery_stalled_mid_load":
        extracted = stall_bigquery_mid_load(fault_stack, config)
    else:
        service, point = cell.split("-")
        extracted = crash_during_cycle(fault_stack, config, service, point, monkeypatch)

    if cell in OTHER_FAULTS[:2]:
        assert manifests(config, target) == before, "a snapshot cut short must leave no manifest"
    if cell not in NOT_APPLIED:
        faulted = settle(config, extracted)
        assert faulted.ok, faulted

    change(2)
    next_cycle = extract_once_holder_gone if cell == "extractor_killed_mid_table" else extract_tables
    final = settle(config, next_cycle(config))
    assert final.ok, final
    assert_tables_equal(config)
    assert ledger_problems(config, table) == []
    assert dead_letters(stack, [stack.project, config.pubsub.project]) == []
    if cell in NOT_APPLIED:
        assert not [r for r in ledger_rows(config, final.target) if r["run_id"] in {e.run_id for e in extracted}]
