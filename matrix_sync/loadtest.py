"""`matrix-sync loadtest`: many tables of mixed sizes and key shapes synced concurrently through
the local stack for several change cycles, bounded in size and time.

It checks what a data team must be able to rely on: every table reconciles after every cycle, no
snapshot is applied twice or lost (the ledger holds exactly one applied row per run), and it reports
throughput, the slowest table's latency from manifest to verdict, and each process's peak memory.
"""
from __future__ import annotations

import json
import math
import random
import resource
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from matrix_sync.cycle import TableReport, wait_for_chain
from matrix_sync.environment import target_config
from shared import bigquery as bq
from shared.config import Config, load_config
from shared.extractor.run import extract_tables
from shared.extractor.snapshot import ExtractResult
from shared.identifiers import quote_bigquery
from shared.topology import LEDGER_TABLE

KEY_SHAPES = ("int", "int_text", "text", "date_int")
_KEY_COLUMNS = {"int": ["id"], "int_text": ["id", "region"], "text": ["code"], "date_int": ["day", "seq"]}
_KEY_DDL = {
    "int": "id INTEGER NOT NULL", "int_text": "id INTEGER NOT NULL, region VARCHAR(8) NOT NULL",
    "text": "code VARCHAR(36) NOT NULL", "date_int": "day DATE NOT NULL, seq INTEGER NOT NULL",
}
_VALUE_DDL = ("amount DECIMAL(12,2), label NVARCHAR(40), flag BOOLEAN NOT NULL, happened DATETIME, "
              "ratio FLOAT, note TEXT")


@dataclass(frozen=True)
class LoadTable:
    name: str
    shape: str
    rows: int

    @property
    def key(self) -> list[str]:
        return _KEY_COLUMNS[self.shape]


@dataclass
class CycleStats:
    cycle: int
    tables: int
    rows: int
    shipped_rows: int
    seconds: float
    slowest_table: str
    slowest_latency_s: float
    failures: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    tables: int
    total_rows: int
    cycles: list[CycleStats]
    duplicate_or_lost_runs: list[str]
    peak_memory_mb: dict[str, float]
    stopped_early: bool

    @property
    def ok(self) -> bool:
        return not self.duplicate_or_lost_runs and not any(c.failures for c in self.cycles)


def plan_tables(count: int, max_rows: int, seed: int) -> list[LoadTable]:
    """Sizes log-uniform between 100 and max_rows (the largest table always max_rows)."""
    rng = random.Random(seed)
    tables = []
    for i in range(count):
        rows = max_rows if i == 0 else int(math.exp(rng.uniform(math.log(100), math.log(max(max_rows, 101)))))
        tables.append(LoadTable(f"load_{i:03d}", KEY_SHAPES[i % len(KEY_SHAPES)], rows))
    return tables


def _key_values(shape: str, n: int) -> tuple:
    if shape == "int":
        return (n,)
    if shape == "int_text":
        return (n // 3, ("north", "south", "east")[n % 3])
    if shape == "text":
        return (str(uuid.UUID(int=n * 2654435761 % (1 << 128))),)
    return time.strftime("%Y-%m-%d", time.gmtime(1_577_836_800 + (n // 100) * 86_400)), n % 100


def _row(shape: str, n: int, rng: random.Random) -> tuple:
    return (*_key_values(shape, n), f"{rng.uniform(-1e6, 1e6):.2f}", rng.choice(["Ålesund", "東京", "", None, "x" * 30]),
            rng.random() < 0.5, f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 10:00:00.{rng.randint(0, 999999):06d}",
            rng.random() if rng.random() < 0.9 else None, None if rng.random() < 0.3 else "note")


def create_source(path: Path, tables: list[LoadTable], seed: int) -> None:
    path.unlink(missing_ok=True)
    rng = random.Random(seed)
    with sqlite3.connect(path) as connection:
        for table in tables:
            key = ", ".join(table.key)
            connection.execute(f"CREATE TABLE {table.name} ({_KEY_DDL[table.shape]}, {_VALUE_DDL}, PRIMARY KEY ({key}))")
            placeholders = ", ".join("?" * (len(table.key) + 6))
            for start in range(0, table.rows, 20_000):
                batch = (_row(table.shape, n, rng) for n in range(start, min(start + 20_000, table.rows)))
                connection.executemany(f"INSERT INTO {table.name} VALUES ({placeholders})", batch)
            connection.commit()


def mutate_source(path: Path, tables: list[LoadTable], cycle: int, seed: int) -> None:
    """About 1% updates, 0.5% inserts and 0.5% deletes per table."""
    rng = random.Random(seed + cycle)
    with sqlite3.connect(path) as connection:
        for table in tables:
            connection.execute(f"UPDATE {table.name} SET amount = amount + 1, label = ? WHERE rowid % 100 = ?",
                               (f"cycle {cycle}", cycle % 100))
            connection.execute(f"DELETE FROM {table.name} WHERE rowid % 200 = ?", ((cycle + 50) % 200,))
            top = connection.execute(f"SELECT MAX(rowid) FROM {table.name}").fetchone()[0] or 0
            inserts = max(1, table.rows // 200)
            start = table.rows * (cycle + 1) * 10 + top
            placeholders = ", ".join("?" * (len(table.key) + 6))
            connection.executemany(f"INSERT OR IGNORE INTO {table.name} VALUES ({placeholders})",
                                   (_row(table.shape, start + n, rng) for n in range(inserts)))
        connection.commit()


def write_config(path: Path, database: Path, tables: list[LoadTable], mode: str, project: str) -> Config:
    path.write_text(yaml.safe_dump({
        "source": {"url": f"sqlite:///{database.resolve()}"},
        "tables": [{"name": t.name, "key": t.key} for t in tables],
        "gcs": {"bucket": f"{project}-snapshots"},
        "bigquery": {"project": project, "dataset": "load"},
        "pubsub": {"project": project},
        "extract": {"chunk_rows": 50_000, "mode": mode},
        "run": {"wait_timeout_s": 1800},
    }, sort_keys=False))
    return load_config(path)


def run_cycle(config: Config, cycle: int, workers: int, deadline: float) -> CycleStats:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        extracted: list[ExtractResult] = [r for batch in pool.map(lambda t: extract_tables(config, [t.name]), config.tables)
                                          for r in batch]
    written_at = time.monotonic()
    done_at: dict[str, float] = {}
    reports: list[TableReport] = []
    while True:
        reports = wait_for_chain(config, extracted, timeout_s=0, poll_s=0)
        now = time.monotonic()
        for report in reports:
            if report.done:
                done_at.setdefault(report.table, now - written_at)
        if all(r.done for r in reports) or now > deadline:
            break
        time.sleep(1)
    slowest = max(done_at.items(), key=lambda item: item[1], default=("-", float("nan")))
    return CycleStats(
        cycle=cycle, tables=len(reports), rows=sum(r.rows for r in extracted),
        shipped_rows=sum(r.shipped_rows for r in extracted), seconds=round(time.monotonic() - started, 2),
        slowest_table=slowest[0], slowest_latency_s=round(slowest[1], 2),
        failures=[f"{r.table}: {r.load_status}/{r.reconciliation}/{r.validation}" for r in reports if not r.ok],
    )


def ledger_anomalies(config: Config) -> list[str]:
    """Runs applied more than once, or applied runs the ledger does not account for."""
    ledger = quote_bigquery(config.bigquery.project, config.bigquery.dataset, LEDGER_TABLE)
    rows = bq.query(config.bigquery.project,
                    f"SELECT run_id, COUNTIF(status = 'applied') AS applied FROM {ledger} GROUP BY run_id "
                    "HAVING COUNTIF(status = 'applied') != 1")
    return [f"{row['run_id']}: applied {row['applied']} times" for row in rows]


def peak_memory_mb(pids: dict[str, int]) -> dict[str, float]:
    peaks = {}
    for name, pid in pids.items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = round(int(line.split()[1]) / 1024, 1)
    return peaks


def run_load(workdir: Path, *, tables: int, max_rows: int, cycles: int, workers: int, mode: str,
             time_limit_s: float, seed: int, service_pids: dict[str, int], project: str) -> LoadReport:
    deadline = time.monotonic() + time_limit_s
    workdir.mkdir(parents=True, exist_ok=True)
    plan = plan_tables(tables, max_rows, seed)
    database = workdir / "load.db"
    create_source(database, plan, seed)
    config = write_config(workdir / "load.yaml", database, plan, mode, project)
    target_config(config)
    stats = []
    stopped_early = False
    for cycle in range(cycles):
        if time.monotonic() > deadline:
            stopped_early = True
            break
        if cycle:
            mutate_source(database, plan, cycle, seed)
        stats.append(run_cycle(config, cycle, workers, deadline))
    peaks = peak_memory_mb(service_pids)
    peaks["extractor (this process)"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return LoadReport(tables=len(plan), total_rows=sum(t.rows for t in plan), cycles=stats,
                      duplicate_or_lost_runs=ledger_anomalies(config), peak_memory_mb=peaks,
                      stopped_early=stopped_early)


def report_json(report: LoadReport) -> str:
    return json.dumps({**asdict(report), "ok": report.ok}, indent=2, default=str)
