"""A full snapshot split into key ranges extracted by parallel processes holds exactly the rows of a
sequential one: same count, same fingerprint, and the chain loads it into an equal table."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.config import Config, load_config
from shared.extractor.source import connect, discover, key_boundaries
from shared.manifest import Manifest, parse_manifest
from tests.e2e.test_server_sources import POSTGRES_DDL, POSTGRES_ROWS
from tests.support import assert_tables_equal, ensure_resources, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


def _with_ranges(path: Path, ranges: int) -> Config:
    raw = yaml.safe_load(path.read_text())
    raw["extract"] |= {"parallel_ranges": ranges, "mode": "full"}  # ranges split full snapshots only
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _manifest(uri: str) -> Manifest:
    bucket, name = gcs.split_uri(uri)
    return parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=name.rsplit("/", 1)[0])


def test_ranges_of_the_sample_load_equal_to_the_source(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "small", seed=8)
    tables = {name: sample.TABLE_KEYS[name] for name in ("customers", "deliveries")}
    write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables=tables, suffix=unique_name, chunk_rows=200)
    config = _with_ranges(tmp_path / "c.yaml", 4)
    ensure_resources(stack, config)
    extracted = extract_all(config)
    reports = wait_for_chain(config, extracted, timeout_s=180)
    assert all(r.ok for r in reports), reports
    deliveries = next(r for r in extracted if r.table == "deliveries")
    assert {p.uri.rsplit("/", 1)[1][:9] for p in _manifest(deliveries.manifest_uri).parts} == {
        "part-r000", "part-r001", "part-r002", "part-r003"}
    assert_tables_equal(config)


def test_text_keys_in_a_collated_postgresql_table_split_without_overlap_or_gap(
    stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    name = f"ranges_{unique_name}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(POSTGRES_DDL.format(name=name))
        connection.exec_driver_sql(POSTGRES_ROWS.format(name=name).replace("%", "%%"))
        connection.exec_driver_sql(f"INSERT INTO {name} (region_code, account_id, active) "
                                   "VALUES ('apple', 1, true), ('Zebra', 1, true), ('éclair', 1, false)")
    try:
        write_config(tmp_path / "c.yaml", url=url, tables={name: ["region_code", "account_id"]},
                     suffix=unique_name, chunk_rows=50)
        stack.ensure_resources(bucket=f"bucket-{unique_name}", bigquery_project=f"proj-{unique_name}",
                               dataset=f"ds_{unique_name}", pubsub_project=f"proj-{unique_name}")
        sequential = _manifest(extract_all(_with_ranges(tmp_path / "c.yaml", 1))[0].manifest_uri)
        config = _with_ranges(tmp_path / "c.yaml", 3)
        source_engine = connect(config.source)
        source = discover(source_engine, config.tables[0])
        assert len(key_boundaries(source_engine, source, 3)) == 2
        # 64 ranges asked of 303 rows: a range is worth its process only with a chunk's rows or more
        assert len(key_boundaries(source_engine, source, 64, min_rows=50)) == 303 // 50 - 1
        source_engine.dispose()
        parallel = _manifest(extract_all(config)[0].manifest_uri)
        assert parallel.row_count == sequential.row_count == 303
        assert parallel.fingerprint == sequential.fingerprint
        assert len(parallel.parts) > len(sequential.parts)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE {name}")
        engine.dispose()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and f"\nPPid:\t{pid}\n" in status:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_range_workers_end_when_their_parent_is_killed(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    """A `matrix-sync extract` killed outright left its range workers running, then waiting forever."""
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "medium", seed=10)
    write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={"deliveries": sample.TABLE_KEYS["deliveries"]},
                 suffix=unique_name, chunk_rows=100)
    config = _with_ranges(tmp_path / "c.yaml", 2)
    ensure_resources(stack, config)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")} | {
        "MATRIX_STACK_DIR": str(stack.root)}
    parent = subprocess.Popen([sys.executable, "-m", "matrix_sync.cli", "--log-file", str(tmp_path / "log.jsonl"),
                               "extract", "--config", str(tmp_path / "c.yaml")], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
            workers = [pid for pid in _children(parent.pid)
                       if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            time.sleep(0.2)
        assert len(workers) == 2 and parent.poll() is None, "the workers never started while the parent ran"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "range workers outlived their parent"
    finally:
        parent.kill()
        for pid in workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
