"""The chain from real PostgreSQL and MariaDB servers: types those drivers return (timestamptz,
uuid, bytea, numeric, unsigned and tinyint booleans) must land in BigQuery equal to the source."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from matrix_sync.cycle import TableReport, extract_all, wait_for_chain
from matrix_sync.stack import LocalStack
from shared.config import Config
from tests.support import assert_tables_equal, ensure_resources, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

POSTGRES_DDL = """
CREATE TABLE {name} (
  region_code varchar(8) NOT NULL,
  account_id bigint NOT NULL,
  balance numeric(14, 2),
  rate double precision,
  opened_on date,
  updated_at timestamp(6),
  synced_at timestamptz,
  active boolean NOT NULL,
  token uuid,
  note text,
  blob bytea,
  PRIMARY KEY (region_code, account_id))
"""
POSTGRES_ROWS = """
INSERT INTO {name} SELECT
  CASE WHEN g % 3 = 0 THEN 'NORTH' ELSE 'süd' END, g, (g * 10.05)::numeric(14,2), g / 7.0,
  DATE '2024-01-01' + g, TIMESTAMP '2024-01-01 08:00:00.123456' + g * INTERVAL '1 minute',
  TIMESTAMPTZ '2024-01-01 08:00:00+02' + g * INTERVAL '1 second', g % 2 = 0,
  md5(g::text)::uuid, CASE WHEN g % 5 = 0 THEN NULL WHEN g % 7 = 0 THEN '' ELSE 'note ' || g END,
  decode(md5(g::text), 'hex')
FROM generate_series(1, 300) AS g
"""
MARIADB_DDL = """
CREATE TABLE {name} (
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  amount DECIMAL(18, 4) NOT NULL,
  flag TINYINT(1) NOT NULL,
  created DATETIME(6) NOT NULL,
  day DATE NULL,
  label VARCHAR(100) CHARACTER SET utf8mb4 NULL,
  ratio FLOAT NULL)
"""
MARIADB_ROWS = """
INSERT INTO {name} SELECT seq, seq * 1.2345, MOD(seq, 2), '2024-03-01 10:00:00.000001' + INTERVAL seq SECOND,
  IF(MOD(seq, 4) = 0, NULL, '2024-03-01' + INTERVAL seq DAY), IF(MOD(seq, 3) = 0, 'Grüße 東京', CONCAT('label ', seq)),
  IF(MOD(seq, 6) = 0, NULL, seq / 3)
FROM seq_1_to_250
"""

SERVERS = {
    "postgresql": ("postgresql+psycopg2://postgres@127.0.0.1:5432/test", POSTGRES_DDL, POSTGRES_ROWS,
                   ["region_code", "account_id"],
                   "UPDATE {name} SET balance = balance + 1, note = 'changed ✓' WHERE account_id % 10 = 1; "
                   "DELETE FROM {name} WHERE account_id % 25 = 0; "
                   "INSERT INTO {name} (region_code, account_id, active) VALUES ('NEW', 1000, true)"),
    "mariadb": ("mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4", MARIADB_DDL, MARIADB_ROWS, ["id"],
                "UPDATE {name} SET label = NULL WHERE MOD(id, 10) = 1; DELETE FROM {name} WHERE MOD(id, 25) = 0; "
                "INSERT INTO {name} (id, amount, flag, created) VALUES (1000, -0.5, 1, '2025-01-01 00:00:00')"),
}


def _execute(url: str, statements: str) -> None:
    """Through the DB-API cursor without parameters, so '%' in SQL stays an operator."""
    engine = sa.create_engine(url)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        for statement in statements.split("; "):
            cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()
        engine.dispose()


def _sync_change_sync(stack: LocalStack, config: Config, change: Callable[[], None]) -> TableReport:
    """Two cycles of the config's one table, `change` made to the source between them; each must be
    applied, reconciled, validated and leave BigQuery equal to the source. Returns the second's report."""
    ensure_resources(stack, config)
    for cycle in range(2):
        (report,) = wait_for_chain(config, extract_all(config), timeout_s=180)
        assert (report.load_status, report.reconciliation, report.validation) == ("applied", "match", "passed"), report
        assert_tables_equal(config)
        if cycle == 0:
            change()
    return report


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_server_table_replicates_through_the_chain(
    server: str, stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    url, ddl, rows, key, changes = SERVERS[server]
    name = f"sync_test_{unique_name}"
    _execute(url, ddl.format(name=name).strip())
    try:
        _execute(url, rows.format(name=name).strip())
        config = write_config(tmp_path / "config.yaml", url=url, tables={name: key}, suffix=unique_name,
                              chunk_rows=64)
        stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                               dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
        for cycle in range(2):
            reports = wait_for_chain(config, extract_all(config), timeout_s=180)
            assert [(r.load_status, r.reconciliation, r.validation) for r in reports] == [
                ("applied", "match", "passed")], reports
            assert_tables_equal(config)
            if cycle == 0:
                _execute(url, changes.format(name=name))
        assert reports[0].rows_inserted == 1 and reports[0].rows_deleted > 0 and reports[0].rows_updated > 0
    finally:
        _execute(url, f"DROP TABLE {name}")


def test_a_schema_and_table_named_with_a_space_and_a_dot(stack: LocalStack, tmp_path: Path,
                                                         unique_name: str) -> None:
    """Quoted in the config (`"Sales <x>".[orders.v2]`), as SQL Server's brackets would quote them."""
    url = SERVERS["postgresql"][0]
    schema = f"Sales {unique_name}"
    _execute(url, f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}"."orders.v2" (id int PRIMARY KEY, v text); '
                  f'INSERT INTO "{schema}"."orders.v2" VALUES (1, \'a\'), (2, \'b\')')
    try:
        config = write_config(tmp_path / "config.yaml", url=url, tables={f'"{schema}".[orders.v2]': ["id"]},
                              suffix=unique_name)
        report = _sync_change_sync(stack, config, lambda: _execute(
            url, f'UPDATE "{schema}"."orders.v2" SET v = \'changed\' WHERE id = 1'))
        assert (report.mode, report.rows_updated) == ("delta", 1)
    finally:
        _execute(url, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.mark.parametrize("server", ["mariadb", "postgresql", "sqlite"])
def test_names_configured_in_another_case_than_the_sources_are_found(
    server: str, stack: LocalStack, tmp_path: Path, unique_name: str
) -> None:
    """`ITEMS_<x>` with key `ITEMID` for a table created as `Items_<x> (ItemID ...)`: SQLite and MySQL
    keep that spelling, PostgreSQL folds it to lower case; each finds a table or column in any case."""
    url = f"sqlite:///{tmp_path / 'source.db'}" if server == "sqlite" else SERVERS[server][0]
    created = f"Items_{unique_name}"
    _execute(url, f"CREATE TABLE {created} (ItemID int PRIMARY KEY, Label varchar(20)); "
                  f"INSERT INTO {created} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    try:
        config = write_config(tmp_path / "config.yaml", url=url, tables={created.upper(): ["ITEMID"]},
                              suffix=unique_name)
        report = _sync_change_sync(stack, config, lambda: _execute(
            url, f"UPDATE {created} SET Label = 'changed' WHERE ItemID = 2"))
        assert (report.mode, report.rows_updated) == ("delta", 1)
    finally:
        _execute(url, f"DROP TABLE {created}")


def test_a_citext_key_gets_deltas(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    """citext orders ignoring case whatever the collation: read in that order, its keys were out of
    the code-point order deltas compare them in, and every delta fell back to a full snapshot."""
    url = SERVERS["postgresql"][0]
    name = f"citext_keys_{unique_name}"
    _execute(url, f"CREATE EXTENSION IF NOT EXISTS citext; CREATE TABLE {name} (code citext PRIMARY KEY, v int); "
                  f"INSERT INTO {name} SELECT (ARRAY['a', 'B', 'c', 'D', 'é', 'É', 'Zed'])[g % 7 + 1] || g, g "
                  "FROM generate_series(1, 400) AS g")
    try:
        config = write_config(tmp_path / "config.yaml", url=url, tables={name: ["code"]}, suffix=unique_name,
                              chunk_rows=50)
        report = _sync_change_sync(stack, config, lambda: _execute(
            url, f"UPDATE {name} SET v = -v WHERE v % 9 = 0; DELETE FROM {name} WHERE v % 10 = 0; "
                 f"INSERT INTO {name} VALUES ('Ab_new', 1)"))
        assert (report.mode, report.rows_inserted, report.rows_updated, report.rows_deleted) == ("delta", 1, 40, 40)
    finally:
        _execute(url, f"DROP TABLE {name}")
