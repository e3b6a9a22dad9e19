"""What the reliability tests share: a local stack whose services can be crashed at chosen points,
a small source table per cell, and the checks that a table recovered (equal, ledger consistent,
nothing stuck)."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from google.api_core import exceptions as gexc

from matrix_sync.cycle import TableReport, wait_for_chain
from matrix_sync.stack import LocalStack
from matrix_sync.stack.bootstrap import DEAD_LETTER_SUBSCRIPTION_SUFFIX
from shared import bigquery as bq
from shared.clients import storage_client, subscriber
from shared.config import Config
from shared.extractor.snapshot import ExtractResult
from shared.identifiers import quote_bigquery
from shared.topology import FUNCTIONS, LEDGER_TABLE, MANIFEST_NAME, dead_letter_topic

HOOK_DIR = Path(__file__).resolve().parent / "loader_hook"
ROWS = 60
CHUNK_ROWS = 10  # several parts per snapshot, so "between parts" exists


@dataclass(frozen=True)
class FaultStack:
    """A LocalStack whose loader runs with loader_hook, so it can be held at a point of its work."""

    stack: LocalStack
    control: Path

    def hook_env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(HOOK_DIR), "MATRIX_FAULT_CONTROL_DIR": str(self.control)}

    def restart(self, service: str, env: dict[str, str] | None = None) -> None:
        extra = {**(self.hook_env() if service == "loader" else {}), **(env or {})}
        self.stack.restart(service, extra)

    def crash(self, service: str) -> None:
        """SIGKILL, then the same service started again on its port (with whatever state it keeps)."""
        self.stack.kill(service)
        self.restart(service)

    def crash_while_pushing(self, service: str) -> None:
        """`crash` of a push endpoint holding a delivery, with the Pub/Sub emulator paused until the
        new instance is up: the emulator sees the broken push and redelivers to the new instance.
        Unpaused, it retries into the restart window, and after a refused retry it sometimes never
        pushes that message again (a slow machine's restart takes seconds), which no real
        subscription would do."""
        self.stack.freeze("pubsub")
        try:
            self.crash(service)
        finally:
            self.stack.freeze("pubsub", frozen=False)

    def arm(self, point: str) -> None:
        for name in ("reached", "release"):
            (self.control / name).unlink(missing_ok=True)
        (self.control / "armed").write_text(point)

    def wait_reached(self, timeout_s: float = 90) -> None:
        wait_until(lambda: (self.control / "reached").exists(), timeout_s, "the loader to reach the fault point")

    def release(self) -> None:
        (self.control / "release").write_text("go")

    def disarm(self) -> None:
        for name in ("armed", "reached", "release"):
            (self.control / name).unlink(missing_ok=True)


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


# --- source ----------------------------------------------------------------------------------------

def create_table(database: Path, table: str, rows: int = ROWS) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL(10,2), "
                           "seen DATETIME)")
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                               [(n, f"row {n}", f"{n * 1.25:.2f}", f"2024-01-{n % 28 + 1:02d} 10:00:00")
                                for n in range(1, rows + 1)])


def mutate(database: Path, table: str, cycle: int) -> None:
    """About a third of the rows change: updates, deletes and inserts."""
    with sqlite3.connect(database) as connection:
        connection.execute(f"UPDATE {table} SET amount = amount + 1, name = ? WHERE id % 4 = ?", (f"cycle {cycle}",
                                                                                                 cycle % 4))
        connection.execute(f"DELETE FROM {table} WHERE id % 9 = ?", (cycle % 9,))
        connection.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
                               [(1000 * cycle + n, f"new {n}", f"{n}.50", "2024-02-01 00:00:00") for n in range(6)])


# --- checks ----------------------------------------------------------------------------------------

def settle(config: Config, extracted: list[ExtractResult], timeout_s: float = 120) -> TableReport:
    (report,) = wait_for_chain(config, extracted, timeout_s=timeout_s, poll_s=0.3)
    return report


def manifests(config: Config, target: str) -> dict[str, int]:
    """run id -> sequence of every manifest of the table in the bucket."""
    prefix = f"{config.gcs.prefix}/{target}/"
    found = {}
    for blob in storage_client().list_blobs(config.gcs.bucket, prefix=prefix):
        if blob.name.endswith("/" + MANIFEST_NAME):
            found[blob.name.split("/")[-2]] = int(json.loads(blob.download_as_bytes())["sequence"])
    return found


def ledger_rows(config: Config, table_id: str) -> list[dict[str, object]]:
    ledger = quote_bigquery(config.bigquery.project, config.bigquery.dataset, LEDGER_TABLE)
    rows = bq.query(config.bigquery.project, f"SELECT run_id, status, published_at FROM {ledger} "
                                             f"WHERE table_id = '{table_id}'")
    return [dict(row.items()) for row in rows]


def ledger_problems(config: Config, table: str) -> list[str]:
    """Every manifest applied once, or recorded stale, or superseded by a later applied snapshot (a
    re-extraction); no ledger row without its manifest; every applied snapshot announced."""
    target = config.table(table).target_table
    table_id = f"{config.bigquery.project}.{config.bigquery.dataset}.{target}"
    found = manifests(config, target)
    rows = ledger_rows(config, table_id)
    problems = [f"ledger row of {r['run_id']} ({r['status']}) has no manifest"
                for r in rows if r["run_id"] not in found]
    applied = {run: [r for r in rows if r["run_id"] == run and r["status"] == "applied"] for run in found}
    newest_applied = max((found[run] for run, hits in applied.items() if hits), default=-1)
    for run, sequence in sorted(found.items(), key=lambda item: item[1]):
        statuses = sorted(str(r["status"]) for r in rows if r["run_id"] == run)
        if len(applied[run]) > 1:
            problems.append(f"{run} applied {len(applied[run])} times")
        elif applied[run] and applied[run][0]["published_at"] is None:
            problems.append(f"{run} applied but table-loaded never published")
        elif not applied[run] and "stale" not in statuses and sequence > newest_applied:
            problems.append(f"{run} (sequence {sequence}) neither applied, stale nor superseded: {statuses}")
        if "refused" in statuses:
            problems.append(f"{run} refused")
    if found and not applied[max(found, key=lambda run: found[run])]:
        problems.append("the newest snapshot is not applied")
    return problems


def dead_letters(stack: LocalStack, projects: list[str]) -> list[str]:
    """Messages parked in any dead-letter subscription (taken out, so each check sees only new ones)."""
    parked = []
    for project in projects:
        for function in FUNCTIONS:
            name = dead_letter_topic(function) + DEAD_LETTER_SUBSCRIPTION_SUFFIX
            path = subscriber().subscription_path(project, name)
            try:
                response = subscriber().pull(request={"subscription": path, "max_messages": 100,
                                                      "return_immediately": True}, timeout=10)
            except gexc.NotFound:
                continue
            if response.received_messages:
                subscriber().acknowledge(request={"subscription": path,
                                                  "ack_ids": [m.ack_id for m in response.received_messages]})
            parked += [f"{function}: {dict(m.message.attributes)}" for m in response.received_messages]
    return parked
