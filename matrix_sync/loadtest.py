"""`matrix-sync loadtest`: many tables of mixed sizes and key shapes synced concurrently through
the local stack for several change cycles, bounded in size and time.

It checks what a data team must be able to rely on: every table reconciles after every cycle, no
snapshot is applied twice or lost (the ledger holds exactly one applied row per run), and it reports
throughput (source and shipped rows per second), each table's latency from its own manifest to its
verdict, and the peak memory of each service's process tree while the cycles ran. Each run has its own
dataset, bucket and files, removed at the end unless kept.
"""
from __future__ import annotations

import json
import math
import random
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from google.api_core.exceptions import GoogleAPIError

from matrix_sync.cycle import TableReport, wait_for_chain
from matrix_sync.environment import running_stack, use_stack
from matrix_sync.loadtest_process import MemorySampler
from matrix_sync.stack import StackError
from shared import bigquery as bq
from shared import clients, gcs
from shared.config import Config, load_config
from shared.extractor.run import Extraction, extract
from shared.extractor.snapshot import ExtractResult
from shared.identifiers import quote_bigquery
from shared.loader.staging import STAGING_TTL
from shared.topology import LEDGER_TABLE, STAGING_DATASET_SUFFIX

KEY_SHAPES = ("int", "int_text", "text", "date_int")
_KEY_COLUMNS = {"int": ["id"], "int_text": ["id", "region"], "text": ["code"], "date_int": ["day", "seq"]}
_KEY_DDL = {
    "int": "id INTEGER NOT NULL", "int_text": "id INTEGER NOT NULL, region VARCHAR(8) NOT NULL",
    "text": "code VARCHAR(36) NOT NULL", "date_int": "day DATE NOT NULL, seq INTEGER NOT NULL",
}
WAIT_TIMEOUT_S = 1800  # a cycle's wait for its verdicts, once its extractions are done
POLL_S = 1.0
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
    rows: int  # read from the source
    shipped_rows: int
    seconds: float  # from the first extraction's start to the last verdict
    source_rows_per_s: float
    shipped_rows_per_s: float
    slowest_table: str
    slowest_latency_s: float | None
    latencies_s: dict[str, float] = field(default_factory=dict)  # table -> its manifest to its verdict
    failures: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    run: str
    dataset: str
    bucket: str
    tables: int
    total_rows: int
    cycles: list[CycleStats]
    duplicate_or_lost_runs: list[str]
    peak_memory_mb: dict[str, float]
    memory_at_start_mb: dict[str, float]
    memory_measured: str
    stop_reason: str | None  # why fewer cycles ran than asked
    kept: bool
    cleanup_problems: list[str] = field(default_factory=list)

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason is not None

    @property
    def ok(self) -> bool:
        return not self.duplicate_or_lost_runs and not any(c.failures for c in self.cycles)


@dataclass(frozen=True)
class RunNames:
    """One run's own dataset, bucket and files, so its cycle 0 is an initial load and nothing it
    leaves can be taken for another run's."""

    project: str
    suffix: str

    @classmethod
    def new(cls, project: str) -> RunNames:
        return cls(project, uuid.uuid4().hex[:8])

    @property
    def dataset(self) -> str:
        return f"load_{self.suffix}"

    @property
    def bucket(self) -> str:
        return f"{self.project}-{self.suffix}"

    def files(self, workdir: Path) -> tuple[Path, Path]:
        """The source database and the config."""
        return workdir / f"load-{self.suffix}.db", workdir / f"load-{self.suffix}.yaml"


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


def write_config(path: Path, database: Path, tables: list[LoadTable], mode: str, names: RunNames,
                 pubsub_project: str) -> Config:
    path.write_text(yaml.safe_dump({
        "source": {"url": f"sqlite:///{database.resolve()}"},
        "tables": [{"name": t.name, "key": t.key} for t in tables],
        "gcs": {"bucket": names.bucket},
        "bigquery": {"project": names.project, "dataset": names.dataset},
        "pubsub": {"project": pubsub_project},
        "extract": {"chunk_rows": 50_000, "mode": mode},
        "run": {"wait_timeout_s": WAIT_TIMEOUT_S},
    }, sort_keys=False))
    return load_config(path)


def point_at_stack() -> str:
    """Points the clients at the running local stack; its project, whose Pub/Sub topics it wires itself."""
    stack = running_stack()
    if stack is None:
        raise StackError("the load test runs on the local stack: start it with `matrix-sync stack up`")
    use_stack(stack)
    return stack.project


def create_run_resources(names: RunNames) -> None:
    """The run's bucket and datasets. Not through `target_config`: the stack remembers what that creates
    and makes it again at every later `stack up`, so a run's resources could never be removed."""
    gcs.ensure_bucket(names.bucket, names.project)
    bq.ensure_dataset(names.project, names.dataset)
    bq.ensure_dataset(names.project, names.dataset + STAGING_DATASET_SUFFIX, default_table_expiration=STAGING_TTL)


def _extract_one(config: Config, table: str) -> tuple[Extraction, float]:
    """The table's snapshot and when its manifest was written (the last thing an extraction writes)."""
    outcome = extract(config, [table])
    return outcome, time.monotonic()


class _ChainWatch:
    """The snapshots of one cycle, polled for verdicts as they are written; each table's latency runs
    from its own manifest to the poll that first saw its verdict."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.extracted: list[ExtractResult] = []
        self.not_extracted: list[str] = []
        self.manifest_at: dict[str, float] = {}  # run_id -> monotonic time
        self.reports: dict[str, TableReport] = {}
        self.latencies_s: dict[str, float] = {}

    def add(self, outcome: Extraction, at: float) -> None:
        for result in outcome.written:
            self.extracted.append(result)
            self.manifest_at[result.run_id] = at
        self.not_extracted += [skipped.describe() for skipped in [*outcome.locked, *outcome.failed]]

    def waiting(self) -> list[ExtractResult]:
        return [r for r in self.extracted if not (r.run_id in self.reports and self.reports[r.run_id].done)]

    def poll(self) -> None:
        waiting = self.waiting()
        if not waiting:
            return
        reports = wait_for_chain(self.config, waiting, timeout_s=0, poll_s=0)
        now = time.monotonic()
        for report in reports:
            self.reports[report.run_id] = report
            if report.done:
                self.latencies_s[report.table] = round(now - self.manifest_at[report.run_id], 2)

    def failures(self) -> list[str]:
        found = [f"{r.table}: {r.load_status}/{r.reconciliation}/{r.validation}" for r in self.reports.values()
                 if r.done and not r.ok]
        found += [f"{r.table}: no verdict {self.config.run.wait_timeout_s} s after extraction "
                  f"({self.reports[r.run_id].load_status if r.run_id in self.reports else 'pending'})"
                  for r in self.waiting()]
        return found + self.not_extracted


def run_cycle(config: Config, cycle: int, workers: int) -> CycleStats:
    """Extracts every table, `workers` at once, and waits for every verdict (at most the config's
    wait timeout after the last extraction): a cycle that started always runs to its end."""
    started = time.monotonic()
    watch = _ChainWatch(config)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = {pool.submit(_extract_one, config, table.name) for table in config.tables}
        while running:
            finished, running = wait(running, timeout=POLL_S)
            for future in finished:
                watch.add(*future.result())
            watch.poll()
    give_up = time.monotonic() + config.run.wait_timeout_s
    while watch.waiting() and time.monotonic() < give_up:
        time.sleep(POLL_S)
        watch.poll()
    return _cycle_stats(cycle, watch, time.monotonic() - started)


def _cycle_stats(cycle: int, watch: _ChainWatch, seconds: float) -> CycleStats:
    rows, shipped = sum(r.rows for r in watch.extracted), sum(r.shipped_rows for r in watch.extracted)
    slowest = max(watch.latencies_s.items(), key=lambda item: item[1], default=("-", None))
    return CycleStats(
        cycle=cycle, tables=len(watch.extracted), rows=rows, shipped_rows=shipped, seconds=round(seconds, 2),
        source_rows_per_s=round(rows / seconds, 1), shipped_rows_per_s=round(shipped / seconds, 1),
        slowest_table=slowest[0], slowest_latency_s=slowest[1], latencies_s=watch.latencies_s,
        failures=watch.failures(),
    )


def ledger_anomalies(config: Config) -> list[str]:
    """Runs applied more than once, or applied runs the ledger does not account for."""
    ledger = quote_bigquery(config.bigquery.project, config.bigquery.dataset, LEDGER_TABLE)
    rows = bq.query(config.bigquery.project,
                    f"SELECT run_id, COUNTIF(status = 'applied') AS applied FROM {ledger} GROUP BY run_id "
                    "HAVING COUNTIF(status = 'applied') != 1")
    return [f"{row['run_id']}: applied {row['applied']} times" for row in rows]


def run_cycles(config: Config, database: Path, plan: list[LoadTable], cycles: int, workers: int,
               time_limit_s: float, seed: int, memory: MemorySampler) -> tuple[list[CycleStats], str | None]:
    """The cycles, and why fewer ran than asked: the first always runs, no other starts once
    `time_limit_s` has passed since the first started."""
    stats: list[CycleStats] = []
    started = time.monotonic()
    for cycle in range(cycles):
        elapsed = time.monotonic() - started
        if cycle and elapsed > time_limit_s:
            return stats, (f"time limit of {time_limit_s:g} s reached after cycle {cycle - 1} ended "
                           f"({elapsed:.1f} s in): {cycle} of {cycles} cycles ran")
        if cycle:
            mutate_source(database, plan, cycle, seed)
        with memory.sampling():
            stats.append(run_cycle(config, cycle, workers))
    return stats, None


def remove_cloud(names: RunNames) -> list[str]:
    """Drops the run's datasets (target and staging) and its bucket; what could not be removed."""
    problems = []
    client = clients.bigquery_client(names.project)
    for dataset in (names.dataset, names.dataset + STAGING_DATASET_SUFFIX):
        try:
            client.delete_dataset(f"{names.project}.{dataset}", delete_contents=True, not_found_ok=True)
        except (GoogleAPIError, OSError) as error:
            problems.append(f"dataset {names.project}.{dataset}: {error}")
    try:
        _remove_bucket(names)
    except (GoogleAPIError, OSError) as error:
        problems.append(f"bucket {names.bucket}: {error}")
    return problems


def _remove_bucket(names: RunNames) -> None:
    storage = clients.storage_client(names.project)
    bucket = storage.lookup_bucket(names.bucket)
    if bucket is None:
        return
    for blob in storage.list_blobs(bucket):
        blob.delete()
    bucket.delete()


def remove_files(files: list[Path], directory: Path | None) -> None:
    """Deletes the run's files, and `directory` once empty."""
    for path in files:
        path.unlink(missing_ok=True)
    if directory is not None and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def run_load(workdir: Path, *, tables: int, max_rows: int, cycles: int, workers: int, mode: str,
             time_limit_s: float, seed: int, service_pids: dict[str, int], project: str, keep: bool = False,
             names: RunNames | None = None) -> LoadReport:
    """The load test in a dataset, bucket and files of its own, all removed at the end unless `keep`."""
    names = names or RunNames.new(project)
    pubsub_project = point_at_stack()
    new_directory = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    database, config_path = names.files(workdir)
    plan = plan_tables(tables, max_rows, seed)
    memory = MemorySampler(service_pids)
    problems: list[str] = []
    try:
        create_source(database, plan, seed)
        create_run_resources(names)
        config = write_config(config_path, database, plan, mode, names, pubsub_project)
        stats, stop_reason = run_cycles(config, database, plan, cycles, workers, time_limit_s, seed, memory)
        anomalies = ledger_anomalies(config)
    finally:
        if not keep:
            problems = remove_cloud(names)
            remove_files([database, config_path], workdir if new_directory else None)
    return LoadReport(run=names.suffix, dataset=f"{names.project}.{names.dataset}", bucket=names.bucket,
                      tables=len(plan), total_rows=sum(t.rows for t in plan), cycles=stats,
                      duplicate_or_lost_runs=anomalies, peak_memory_mb=memory.mb(memory.peak_kb),
                      memory_at_start_mb=memory.mb(memory.start_kb), memory_measured=memory.description,
                      stop_reason=stop_reason, kept=keep, cleanup_problems=problems)


def report_json(report: LoadReport) -> str:
    return json.dumps({**asdict(report), "stopped_early": report.stopped_early, "ok": report.ok}, indent=2,
                      default=str)
