"""`matrix-sync demo`: the whole product on the local stack, from a fresh clone."""
from __future__ import annotations

from pathlib import Path

import yaml

from matrix_sync import sample
from matrix_sync.console import console, run_and_report, styled
from matrix_sync.environment import local_stack, target_config
from shared.config import load_config

DEMO_PROJECT = "matrix-demo"


def write_demo_config(path: Path, database: Path) -> Path:
    """A config for the sample source, the same shape a user writes for the real Matrix server."""
    config = {
        "source": {"url": f"sqlite:///{database.resolve()}"},
        "tables": [{"name": name, "key": key} for name, key in sample.TABLE_KEYS.items()],
        "gcs": {"bucket": "matrix-demo-snapshots"},
        "bigquery": {"project": DEMO_PROJECT, "dataset": "matrix"},
        "pubsub": {"project": DEMO_PROJECT},
        "extract": {"chunk_rows": 20_000},
        "run": {"wait_timeout_s": 300},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_demo(size: str, fraction: float, workdir: Path) -> bool:
    customers = sample.customer_count(size)
    workdir.mkdir(parents=True, exist_ok=True)
    console.rule("local stack")
    local_stack().up(progress=lambda message: console.print(f"  {message}"))
    console.rule("sample Matrix source")
    database = workdir / "matrix.db"
    counts = sample.create_sample(database, customers)
    console.print(f"  {database}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    config_path = write_demo_config(workdir / "matrix-sync.yaml", database)
    config = load_config(config_path)
    target_config(config)
    console.rule("cycle 1: initial full snapshot")
    first = run_and_report(config, [], config.run.wait_timeout_s, "cycle 1")
    console.rule("changes in the source")
    changes = sample.mutate(database, fraction)
    console.print("  " + ", ".join(f"{t} +{c.inserted} ~{c.updated} -{c.deleted}" for t, c in changes.items()))
    console.rule("cycle 2: after the changes")
    second = run_and_report(config, [], config.run.wait_timeout_s, "cycle 2")
    console.print(styled("every table reconciled", "bold green") if first and second
                  else styled("some tables did not reconcile", "bold red"))
    console.print(f"config: {config_path}  (matrix-sync run --config {config_path})")
    console.print("the local stack keeps running for a look around; stop it with: matrix-sync stack down")
    return first and second
