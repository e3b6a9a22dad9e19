"""PostgreSQL sessions are read in fixed settings, after whatever options the configured URL gives;
a SQLite source must be a file that exists."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.config import SourceConfig
from shared.extractor.source import SourceError, _session_settings, connect

FIXED = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c standard_conforming_strings=on"


def test_postgresql_gets_the_fixed_settings_after_the_urls_own() -> None:
    given = sa.engine.make_url("postgresql+psycopg2://etl@db/matrix?options=-c%20search_path%3Dsales&sslmode=require")
    settled = _session_settings(given)
    assert settled.query == {"options": f"-c search_path=sales {FIXED}", "sslmode": "require"}
    assert _session_settings(sa.engine.make_url("postgresql://etl@db/matrix")).query == {"options": FIXED}


def test_other_sources_are_left_as_they_are() -> None:
    for url in ("sqlite:///matrix.db", "mysql+pymysql://etl@db/matrix", "mssql+pymssql://etl@db/Matrix"):
        assert _session_settings(sa.engine.make_url(url)) == sa.engine.make_url(url)


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path) -> None:
    """SQLite would create an empty database there, and every table would read as gone."""
    missing = tmp_path / "typo.db"
    with pytest.raises(SourceError, match=f"database file {missing} does not exist"):
        connect(SourceConfig(url=f"sqlite:///{missing}"))
    assert not missing.exists()
    sqlite3.connect(missing).close()
    connect(SourceConfig(url=f"sqlite:///{missing}")).dispose()
