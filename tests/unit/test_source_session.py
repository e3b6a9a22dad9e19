"""PostgreSQL sessions are read in fixed settings, after whatever options the configured URL gives."""
from __future__ import annotations

import sqlalchemy as sa

from shared.extractor.source import _session_settings

FIXED = "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres"


def test_postgresql_gets_the_fixed_settings_after_the_urls_own() -> None:
    given = sa.engine.make_url("postgresql+psycopg2://etl@db/matrix?options=-c%20search_path%3Dsales&sslmode=require")
    settled = _session_settings(given)
    assert settled.query == {"options": f"-c search_path=sales {FIXED}", "sslmode": "require"}
    assert _session_settings(sa.engine.make_url("postgresql://etl@db/matrix")).query == {"options": FIXED}


def test_other_sources_are_left_as_they_are() -> None:
    for url in ("sqlite:///matrix.db", "mysql+pymysql://etl@db/matrix", "mssql+pymssql://etl@db/Matrix"):
        assert _session_settings(sa.engine.make_url(url)) == sa.engine.make_url(url)
