"""matrix-sync side by side with dlt and reladiff: `python -m bench --sizes 100k,1M --repeats 3`.

Runs in the project's virtualenv (.venv). Every measurement of the extractor, dlt and reladiff runs
in a fresh subprocess (bench/worker.py) that times itself and reports JSON: "ours" with .venv,
dlt and reladiff with .venv-bench (they need a DuckDB the project's pins exclude). The change
cycles of ours run in this process against a LocalStack (emulators + function servers), because
they measure the whole event chain. Repeats interleave the sides (the order rotates every repeat),
and the CPU time other processes took during each measurement is recorded, so noise shows.
Writes bench/results/<timestamp>.json and bench/results/latest.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import datagen
from bench.markdown import render

ROOT = Path(__file__).resolve().parent.parent
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
SCENARIOS = ("initial", "change", "reconcile", "memory", "hashing")
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_SA_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHANGE = {"updates": 0.01, "inserts": 0.005, "deletes": 0.005}
PLANTED = (0, 100)


class BenchError(RuntimeError):
    pass


# --- noise -----------------------------------------------------------------------------------------

def _busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    busy = sum(values[:8]) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Sample:
    """Wall time and how many cores processes other than this benchmark kept busy meanwhile."""

    started: float = field(default_factory=time.perf_counter)
    busy: float = field(default_factory=_busy_cpu_seconds)
    own: float = field(default_factory=_own_cpu_seconds)
    load: float = field(default_factory=lambda: os.getloadavg()[0])

    def done(self) -> dict[str, float]:
        wall = max(time.perf_counter() - self.started, 1e-6)
        others = max(0.0, (_busy_cpu_seconds() - self.busy) - (_own_cpu_seconds() - self.own))
        return {"wall_s": round(wall, 3), "other_cores": round(others / wall, 2), "loadavg_1m": round(self.load, 2)}


# --- workers ---------------------------------------------------------------------------------------

def worker(python: Path, name: str, args: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    sample = Sample()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([str(python), "-m", "bench.worker", name, json.dumps(args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise BenchError(f"{name} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1]) | {"noise": sample.done()}


@dataclass
class Bench:
    sizes: list[int]
    repeats: int
    scenarios: list[str]
    reconcile_size: int | None
    work: Path
    results: Path
    competitors: bool
    stack_root: Path | None
    hashing_rows: int
    say: Callable[[str], None] = print
    measurements: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stack: Any = None
    own_stack: bool = False
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    namespace: str = ""
    compare_keys_repeats: int = 1
    _source_rows: int | None = None
    _postgres_tables: set[str] = field(default_factory=set)

    def table(self, size: int) -> str:
        return datagen.table_name(size, self.namespace)

    # --- bookkeeping ---------------------------------------------------------------------------

    def record(self, scenario: str, size: int, side: str, repeat: int, result: dict[str, Any], **extra: Any) -> None:
        entry = {"scenario": scenario, "size": size, "side": side, "repeat": repeat, **extra, **result}
        self.measurements.append(entry)
        seconds = result.get("seconds", result.get("end_to_end_s", 0))
        self.say(f"  {scenario:9} {datagen.size_label(size):>5} {side:22} r{repeat} {seconds:8.2f} s"
                 f"  (others used {entry.get('noise', {}).get('other_cores', '?')} cores)")

    def rotated(self, sides: list[Any], repeat: int) -> list[Any]:
        shift = repeat % len(sides)
        return sides[shift:] + sides[:shift]

    # --- data -----------------------------------------------------------------------------------

    def sqlite_path(self, size: int) -> Path:
        return self.work / "data" / f"{self.table(size)}.db"

    def duckdb_path(self, size: int) -> Path:
        return self.work / "data" / f"{self.table(size)}.duckdb"

    def prepare_data(self, size: int, postgres: bool) -> None:
        table = self.table(size)
        lite = self.sqlite_path(size)
        need_lite = not datagen.sqlite_ready(lite, table, size)
        need_pg = postgres and not datagen.postgres_ready(PG_DSN, table, size)
        if postgres:
            self._postgres_tables.add(table)
        if need_lite or need_pg:
            self.say(f"generating {table}: {'SQLite ' if need_lite else ''}{'PostgreSQL' if need_pg else ''}")
            result = datagen.generate(size, sqlite_path=lite if need_lite else None,
                                      postgres_dsn=PG_DSN if need_pg else None, table=table)
            self.say(f"  generated in {result['seconds']} s")

    def prepare_duckdb(self, size: int) -> None:
        path = self.duckdb_path(size)
        stamp = path.with_suffix(".ready")
        if path.exists() and stamp.exists() and stamp.read_text() == str(datagen.GENERATOR_VERSION):
            return
        self.say(f"generating the DuckDB copy of {self.table(size)} (reladiff's other side)")
        worker(BENCH_PYTHON, "duckdb-copy", {"path": str(path), "rows": size, "table": self.table(size)})
        stamp.write_text(str(datagen.GENERATOR_VERSION))

    # --- the local stack --------------------------------------------------------------------------

    def start_stack(self) -> None:
        from matrix_sync.stack import LocalStack, StackPorts
        from shared.clients import reset_clients

        if self.stack_root is not None:
            stack = LocalStack(root=self.stack_root)
            if not all(s.running for s in stack.status()):
                raise BenchError(f"no running stack under {self.stack_root}")
        else:
            stack = LocalStack(root=self.work / "stack", ports=StackPorts.free(), project="bench-local")
            self.say(f"starting a local stack under {stack.root} on free ports")
            stack.up()
            self.own_stack = True
        os.environ.update(stack.env())
        reset_clients()
        self.stack = stack

    def stop_stack(self) -> None:
        if self.stack is not None and self.own_stack:
            stopped = self.stack.down()
            self.say(f"stopped the bench stack: {', '.join(stopped)}")
            for data in ("gcs", "bigquery"):  # gigabytes of snapshots; the logs stay
                shutil.rmtree(self.stack.root / data, ignore_errors=True)

    def chain_config(self, size: int, source: Path, mode: str) -> Any:
        from shared.config import Config

        project = f"bench-{self.suffix}"
        config = Config.model_validate({
            "source": {"url": f"sqlite:///{source}"},
            "tables": [{"name": self.table(size), "key": ["id"]}],
            "gcs": {"bucket": f"bench-{self.suffix}"},
            "bigquery": {"project": project, "dataset": f"bench_{self.suffix}"},
            "pubsub": {"project": project},
            "extract": {"chunk_rows": 50_000, "mode": mode, "full_every": 10_000},
            "run": {"wait_timeout_s": 1800},
        })
        self.stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=project,
                                    dataset=config.bigquery.dataset, pubsub_project=project)
        return config

    def worker_target(self, size: int) -> dict[str, Any]:
        return {"bucket": f"bench-{self.suffix}", "project": f"bench-{self.suffix}", "dataset": f"bench_{self.suffix}",
                "table": self.table(size)}

    # --- scenarios --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = datetime.now(UTC)
        needs_chain = {"change", "reconcile"} & set(self.scenarios)
        if self.competitors and not BENCH_PYTHON.exists():
            raise BenchError(f"{BENCH_PYTHON} is missing: run `make bench-venv` (or pass --no-competitors)")
        try:
            if needs_chain or "initial" in self.scenarios:
                self.start_stack()
            for size in self.sizes:
                self.run_size(size)
            if "hashing" in self.scenarios:
                self.hashing()
        finally:
            self.stop_stack()
            if self.namespace:  # a throw-away run (--smoke) leaves no tables behind
                for table in self._postgres_tables:
                    datagen.drop_postgres(PG_DSN, table)
        return self.summary(started)

    def run_size(self, size: int) -> None:
        label = datagen.size_label(size)
        postgres = "initial" in self.scenarios or (size == self.reconcile_size and "reconcile" in self.scenarios)
        self.prepare_data(size, postgres)
        if "initial" in self.scenarios:
            self.say(f"[{label}] (1) initial extract + hash + Parquet")
            self.initial(size)
        elif "memory" in self.scenarios:
            self.say(f"[{label}] (4) extractor peak memory")
            for repeat in range(self.repeats):
                self.extract_ours(size, "sqlite", "local", repeat, scenario="memory")
                if self.competitors:
                    self.extract_dlt(size, "sqlite", repeat, scenario="memory")
        if {"change", "reconcile"} & set(self.scenarios) and (
                "change" in self.scenarios or size == self.reconcile_size):
            # ours (delta and full share one target table) and dlt each get their own copy of the
            # source, so every cycle of either sees exactly one batch of changes since its last run.
            copy = self.work / "chain" / f"{self.table(size)}-{self.suffix}.db"
            dlt_copy = copy.with_name(f"{self.table(size)}-{self.suffix}-dlt.db")
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.sqlite_path(size), copy)
            self.say(f"[{label}] base: a full cycle through the chain")
            self.cycle(size, copy, "full", repeat=-1, scenario="base")
            if self.competitors and "change" in self.scenarios:
                shutil.copyfile(self.sqlite_path(size), dlt_copy)
                self.dlt_merge(size, dlt_copy, repeat=-1, scenario="base")
            if "reconcile" in self.scenarios and size == self.reconcile_size:
                self.say(f"[{label}] (3) reconciliation, 0 and {PLANTED[1]} planted differences")
                self.reconcile(size, copy)
            if "change" in self.scenarios:
                self.say(f"[{label}] (2) change cycle: 1% updates, 0.5% inserts, 0.5% deletes")
                self.change(size, copy, dlt_copy)
            copy.unlink(missing_ok=True)
            dlt_copy.unlink(missing_ok=True)

    def extract_ours(self, size: int, source: str, target: str, repeat: int, scenario: str = "initial") -> None:
        out = self.work / "out" / f"ours-{target}-{size}"
        shutil.rmtree(out, ignore_errors=True)
        url = f"sqlite:///{self.sqlite_path(size)}" if source == "sqlite" else PG_SA_URL
        args = {"url": url, "table": self.table(size), "out": str(out), "target": target}
        if target == "gcs":
            # a bucket and dataset of its own: the stack's loader loads these snapshots too, and the
            # chain's table refuses snapshots from another bucket (README "Loader")
            args |= self.worker_target(size) | {"bucket": f"bench-{self.suffix}-s1",
                                                "dataset": f"bench_{self.suffix}_s1"}
        result = worker(ROOT / ".venv" / "bin" / "python", "ours-extract", args)
        shutil.rmtree(out, ignore_errors=True)
        self.record(scenario, size, f"ours-{target}", repeat, result, source=source)

    def extract_dlt(self, size: int, source: str, repeat: int, scenario: str = "initial") -> None:
        out = self.work / "out" / f"dlt-{size}"
        shutil.rmtree(out, ignore_errors=True)
        url = f"sqlite:///{self.sqlite_path(size)}" if source == "sqlite" else PG_SA_URL
        result = worker(BENCH_PYTHON, "dlt-extract", {
            "url": url, "table": self.table(size), "out": str(out), "work": str(self.work / "dlt"),
            "name": f"initial_{source}_{datagen.size_label(size).lower()}"})
        shutil.rmtree(out, ignore_errors=True)
        self.record(scenario, size, "dlt", repeat, result, source=source)

    def initial(self, size: int) -> None:
        for repeat in range(self.repeats):
            for source in ("sqlite", "postgresql"):
                sides: list[Callable[[], None]] = [
                    lambda s=source, r=repeat: self.extract_ours(size, s, "local", r)]
                if self.stack is not None:
                    sides.append(lambda s=source, r=repeat: self.extract_ours(size, s, "gcs", r))
                if self.competitors:
                    sides.append(lambda s=source, r=repeat: self.extract_dlt(size, s, r))
                for side in self.rotated(sides, repeat):
                    side()

    def cycle(self, size: int, source: Path, mode: str, repeat: int, scenario: str = "change") -> None:
        from matrix_sync.cycle import extract_all, wait_for_chain
        from shared.clients import storage_client

        config = self.chain_config(size, source, mode)
        sample = Sample()
        extracted = extract_all(config)
        extract_s = time.perf_counter() - sample.started
        reports = wait_for_chain(config, extracted, timeout_s=config.run.wait_timeout_s, poll_s=0.2)
        noise = sample.done()
        report, result = reports[0], extracted[0]
        if not report.ok:
            raise BenchError(f"{mode} cycle of {result.table} did not reconcile: {report}")
        bucket, folder = config.gcs.bucket, result.manifest_uri.split("/", 3)[3].rsplit("/", 1)[0]
        # what the extractor uploaded, and apart from it the whole index the loader compacts in the cloud
        objects = {"data": 0, "deleted": 0, "index": 0, "manifest": 0}
        compacted = 0
        for blob in storage_client().list_blobs(bucket, prefix=folder + "/"):
            name = blob.name.rsplit("/", 1)[-1]
            if name.startswith("compacted"):
                compacted += int(blob.size or 0)
                continue
            kind = ("index" if "/_index/" in blob.name else "deleted" if name.startswith("deleted-")
                    else "manifest" if name.startswith("_manifest") else "data")
            objects[kind] += int(blob.size or 0)
        self.record(scenario, size, f"ours-{result.mode}", repeat, {
            "seconds": noise["wall_s"], "extract_s": round(extract_s, 3), "end_to_end_s": noise["wall_s"],
            "extractor_reported_s": result.seconds, "rows_shipped": result.shipped_rows,
            "deleted_keys_shipped": result.deleted_rows, "bytes_data": objects["data"] + objects["deleted"],
            "bytes_index": objects["index"], "bytes_all": sum(objects.values()), "bytes_compacted_index": compacted,
            "rows_inserted": report.rows_inserted, "rows_updated": report.rows_updated,
            "rows_deleted": report.rows_deleted, "dest_rows": result.rows, "noise": noise})

    def dlt_merge(self, size: int, source: Path, repeat: int, scenario: str = "change") -> None:
        result = worker(BENCH_PYTHON, "dlt-merge", {
            "url": f"sqlite:///{source}", "table": self.table(size), "work": str(self.work / "dlt"),
            "duckdb": str(self.work / "dlt" / f"merge-{self.suffix}-{size}.duckdb"),
            "name": f"merge_{self.suffix}_{datagen.size_label(size).lower()}"})
        result["end_to_end_s"] = result["seconds"]
        self.record(scenario, size, "dlt-merge", repeat, result, source_rows=self._source_rows)

    def change(self, size: int, source: Path, dlt_source: Path) -> None:
        table = self.table(size)
        sides: list[tuple[str, Path, Callable[[int], None]]] = [
            ("delta", source, lambda r: self.cycle(size, source, "delta", r)),
            ("full", source, lambda r: self.cycle(size, source, "full", r)),
        ]
        if self.competitors:
            sides.append(("dlt", dlt_source, lambda r: self.dlt_merge(size, dlt_source, r)))
        # The first delta after the base must follow an applied snapshot: the base is one.
        for repeat in range(self.repeats):
            for number, (name, copy, side) in enumerate(self.rotated(sides, repeat)):
                changes = datagen.mutate_sqlite(copy, table, seed=1000 * repeat + number, **CHANGE)
                self._source_rows = changes["rows_before"] + changes["inserted"] - changes["deleted"]
                self.say(f"    changed: {changes['updated']} updated, {changes['inserted']} inserted, "
                         f"{changes['deleted']} deleted, then {name}")
                side(repeat)

    def reconcile(self, size: int, source: Path) -> None:
        table = self.table(size)
        planted_lite = self.work / "chain" / f"{table}-{self.suffix}-planted.db"
        shutil.copyfile(self.sqlite_path(size), planted_lite)
        datagen.plant_sqlite(planted_lite, table, size, PLANTED[1])
        planted_pg = datagen.plant_postgres(PG_DSN, table, size, PLANTED[1]) if self.competitors else None
        if self.competitors:
            self.prepare_duckdb(size)
        for repeat in range(self.repeats):
            for planted in PLANTED:
                sides: list[Callable[[], None]] = []

                def ours(planted: int = planted, command: str = "ours-compare-keys", repeat: int = repeat) -> None:
                    lite = source if planted == 0 else planted_lite
                    result = worker(ROOT / ".venv" / "bin" / "python", command,
                                    {"url": f"sqlite:///{lite}"} | self.worker_target(size))
                    self.record("reconcile", size, command.replace("-compare", ""), repeat, result, planted=planted,
                                correct=result["differing_keys"] == planted)

                def theirs(planted: int = planted, repeat: int = repeat) -> None:
                    result = worker(BENCH_PYTHON, "reladiff-diff", {
                        "pg_url": PG_URL, "pg_table": table if planted == 0 else planted_pg,
                        "duckdb": str(self.duckdb_path(size)), "table": table})
                    self.record("reconcile", size, "reladiff", repeat, result, planted=planted,
                                correct=result["differing_keys"] == planted)

                if repeat < self.compare_keys_repeats:
                    sides.append(ours)
                sides.append(lambda planted=planted: ours(planted, "ours-compare"))
                if self.competitors:
                    sides.append(theirs)
                for side in self.rotated(sides, repeat):
                    side()
        planted_lite.unlink(missing_ok=True)

    def hashing(self) -> None:
        size = min((s for s in self.sizes if s >= self.hashing_rows), default=max(self.sizes))
        rows = min(size, self.hashing_rows)
        self.say(f"(5) hashing throughput over {rows} rows of {self.table(size)}")
        self.prepare_data(size, postgres=False)
        result = worker(ROOT / ".venv" / "bin" / "python", "ours-hashing", {
            "url": f"sqlite:///{self.sqlite_path(size)}", "table": self.table(size), "rows": rows,
            "rounds": max(3, self.repeats)})
        self.record("hashing", rows, "ours", 0, result | {"seconds": result["rowhasher_s"]})

    # --- summary ----------------------------------------------------------------------------------

    def summary(self, started: datetime) -> dict[str, Any]:
        def version(python: Path, module: str) -> str | None:
            if not python.exists():
                return None
            done = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version('{module}'))"],
                                  capture_output=True, text=True, check=False)
            return done.stdout.strip() or None

        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               check=False).stdout
        others = [m["noise"]["other_cores"] for m in self.measurements if "noise" in m]
        loads = [m["noise"]["loadavg_1m"] for m in self.measurements if "noise" in m]
        return {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "sizes": self.sizes, "repeats": self.repeats, "scenarios": self.scenarios,
            "reconcile_size": self.reconcile_size, "competitors": self.competitors,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
            "versions": {"dlt": version(BENCH_PYTHON, "dlt"), "reladiff": version(BENCH_PYTHON, "reladiff"),
                         "duckdb (bench)": version(BENCH_PYTHON, "duckdb"),
                         "pyarrow": version(ROOT / ".venv" / "bin" / "python", "pyarrow")},
            "git": {"head": git, "uncommitted_files": len(dirty.splitlines())},
            "noise": {"other_cores_median": round(statistics.median(others), 2) if others else None,
                      "other_cores_max": max(others) if others else None,
                      "loadavg_min": min(loads) if loads else None, "loadavg_max": max(loads) if loads else None},
            "notes": self.notes,
            "measurements": self.measurements,
        }


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from several runs: measurements concatenated, noise recomputed over all of them."""
    first = dict(summaries[0])
    if len(summaries) == 1:
        return first
    first["measurements"] = [m for s in summaries for m in s["measurements"]]
    first["sizes"] = sorted({size for s in summaries for size in s["sizes"]})
    first["command"] = " + ".join(s["command"] for s in summaries)
    first["started"] = min(s["started"] for s in summaries)
    first["finished"] = max(s["finished"] for s in summaries)
    first["notes"] = [n for s in summaries for n in s.get("notes", [])]
    heads = list(dict.fromkeys(s["git"]["head"][:10] for s in summaries))
    first["git"] = {"head": " / ".join(heads), "uncommitted_files": max(s["git"]["uncommitted_files"] for s in summaries)}
    others = [m["noise"]["other_cores"] for m in first["measurements"] if "noise" in m]
    loads = [m["noise"]["loadavg_1m"] for m in first["measurements"] if "noise" in m]
    first["noise"] = {"other_cores_median": round(statistics.median(others), 2) if others else None,
                      "other_cores_max": max(others) if others else None,
                      "loadavg_min": min(loads) if loads else None, "loadavg_max": max(loads) if loads else None}
    return first


def _sizes(text: str) -> list[int]:
    return [datagen.parse_size(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated row counts: 100k,1M,10M (default 100k,1M)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement, sides interleaved (default 3)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"any of {','.join(SCENARIOS)}")
    parser.add_argument("--reconcile-size", default=None, help="size of the reconciliation scenario (default 1M, "
                                                               "else the largest size)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: proves the harness works in seconds")
    parser.add_argument("--no-competitors", action="store_true", help="measure ours only (no .venv-bench needed)")
    parser.add_argument("--stack-root", type=Path, default=None, help="use this running local stack instead of starting one")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="generated data and scratch files")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results", help="where the JSON and latest.md go")
    parser.add_argument("--render", type=Path, nargs="+", default=None,
                        help="only re-render latest.md from results JSON file(s); several are merged (e.g. a 10M memory run)")
    parser.add_argument("--compare-keys-repeats", type=int, default=None,
                        help="repeats of the operator's compare-keys in (3) (default: --repeats)")
    parser.add_argument("--hashing-rows", type=int, default=None, help="rows in the hashing scenario (default 100k)")
    options = parser.parse_args(argv)

    if options.render:
        summary = merge([json.loads(path.read_text()) for path in options.render])
        options.results.mkdir(parents=True, exist_ok=True)
        if len(options.render) > 1:
            merged = options.results / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-merged.json"
            merged.write_text(json.dumps(summary, indent=1, default=str) + "\n")
            print(f"written: {merged}")
        markdown = render(summary)
        (options.results / "latest.md").write_text(markdown)
        print(markdown)
        return 0
    sizes = _sizes(options.sizes or ("2000" if options.smoke else "100k,1M"))
    repeats = options.repeats or (1 if options.smoke else 3)
    scenarios = [s.strip() for s in options.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    if options.reconcile_size:
        reconcile_size = datagen.parse_size(options.reconcile_size)
        if reconcile_size not in sizes:
            sizes.append(reconcile_size)
    else:
        reconcile_size = 1_000_000 if 1_000_000 in sizes else max(sizes)
    bench = Bench(sizes=sizes, repeats=repeats, scenarios=scenarios, reconcile_size=reconcile_size,
                  work=options.work.resolve(), results=options.results.resolve(), competitors=not options.no_competitors,
                  stack_root=options.stack_root, hashing_rows=options.hashing_rows or min(100_000, max(sizes)),
                  namespace=secrets.token_hex(3) if options.smoke else "",
                  compare_keys_repeats=options.compare_keys_repeats or repeats)
    bench.work.mkdir(parents=True, exist_ok=True)
    try:
        summary = bench.run()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    bench.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ("-smoke" if options.smoke else "")
    (bench.results / f"{stamp}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    markdown = render(summary)
    (bench.results / ("latest-smoke.md" if options.smoke else "latest.md")).write_text(markdown)
    print(markdown)
    print(f"written: {bench.results / (stamp + '.json')}")
    return 0
