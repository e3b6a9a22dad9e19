"""The same rows stored in SQLite, PostgreSQL and MariaDB hash identically: the canonical encoding
does not depend on which driver returned the values. (Booleans are left out: MariaDB has none,
its BOOLEAN is TINYINT(1) and lands as INT64.)"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from shared.config import SourceConfig, TableConfig
from shared.extractor.snapshot import SnapshotWriter
from shared.extractor.source import connect, discover, stream_rows
from tests.support import write_config

DDL = {
    "sqlite": "CREATE TABLE {t} (id INTEGER NOT NULL PRIMARY KEY, amount DECIMAL(12,2), day DATE, "
              "at DATETIME, label NVARCHAR(50), ratio FLOAT)",
    "postgresql": "CREATE TABLE {t} (id integer NOT NULL PRIMARY KEY, amount numeric(12,2), day date, "
                  "at timestamp(6), label varchar(50), ratio double precision)",
    "mysql": "CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, amount DECIMAL(12,2), day DATE, at DATETIME(6), "
             "label VARCHAR(50) CHARACTER SET utf8mb4, ratio DOUBLE)",
}
ROWS = [
    (1, "12.30", "2024-02-29", "2024-02-29 23:59:59.123456", "Grüße 東京 🌻", 0.1),
    (2, "-0.05", "1999-12-31", "2000-01-01 00:00:00.000001", "", -2.5),
    (3, None, None, None, None, None),
    (4, "0.00", "2030-01-01", "2030-01-01 12:00:00.000000", "trailing  ", 1e-7),
]


def _create(url: str, table: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        connection.exec_driver_sql(DDL[engine.dialect.name].format(t=table))
        for row in ROWS:
            connection.execute(sa.text(f"INSERT INTO {table} VALUES (:a, :b, :c, :d, :e, :f)"),
                               dict(zip("abcdef", row, strict=True)))
    engine.dispose()


def _hashes(url: str, table: str, tmp_path: Path) -> list[tuple[str, str]]:
    config = write_config(tmp_path / "c.yaml", url=url, tables={table: ["id"]}, suffix="x")
    engine = connect(SourceConfig(url=url))
    try:
        source = discover(engine, TableConfig(name=table, key=["id"]))
        writer = SnapshotWriter(config, source, "unused")
        hashes: list[tuple[str, str]] = []
        for chunk in stream_rows(engine, source, 2):
            prepared = writer.prepare(chunk)
            assert writer.quarantined == 0
            hashes += prepared.hashes
        return hashes
    finally:
        engine.dispose()


def test_three_drivers_hash_the_same_rows_identically(tmp_path: Path, unique_name: str) -> None:
    table = f"hash_probe_{unique_name}"
    urls = [f"sqlite:///{tmp_path / 'probe.db'}", "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
            "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"]
    try:
        for url in urls:
            _create(url, table)
        results = {url.split(":")[0]: _hashes(url, table, tmp_path) for url in urls}
    finally:
        for url in urls[1:]:
            engine = sa.create_engine(url)
            with engine.begin() as connection:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            engine.dispose()
    sqlite, postgres, mysql = results.values()
    assert len(sqlite) == len(ROWS)
    assert sqlite == postgres == mysql
    assert len({row_hash for _, row_hash in sqlite}) == len(ROWS)

