"""Connecting a source imports the engines its extraction runs on, so their import is paid once a
process and not inside the first table's extraction; a fresh interpreter shows what is loaded."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ["duckdb", "datafusion", "pyarrow.dataset", "pyarrow.parquet"]


def _loaded_after_connect(url: str) -> dict[str, dict[str, bool]]:
    probe = f"""
import json, sys
from shared.config import SourceConfig
from shared.extractor.source import connect
names = {json.dumps(ENGINES + ["adbc_driver_sqlite.dbapi", "adbc_driver_postgresql.dbapi"])}
before = {{n: n in sys.modules for n in names}}
connect(SourceConfig(url={url!r})).dispose()
print(json.dumps({{"before": before, "after": {{n: n in sys.modules for n in names}}}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_sqlite_source_loads_the_engines_and_its_arrow_reader_when_connected(tmp_path: Path) -> None:
    database = tmp_path / "matrix.db"
    sqlite3.connect(database).close()
    loaded = _loaded_after_connect(f"sqlite:///{database}")
    assert not any(loaded["before"].values()), loaded["before"]
    assert all(loaded["after"][name] for name in [*ENGINES, "adbc_driver_sqlite.dbapi"]), loaded["after"]
    assert not loaded["after"]["adbc_driver_postgresql.dbapi"]  # only the reader of this source's dialect
