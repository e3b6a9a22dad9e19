"""A configured name the PostgreSQL server cannot be matched to is refused with what it does hold:
a table in two cases is not guessed, a misspelt table gets the nearest name, a missing schema is
named. Against the real server on 127.0.0.1:5432."""
from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import pytest

from shared.config import SourceConfig, TableConfig
from shared.extractor.source import SourceError, connect, discover

URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _execute(sql: str) -> None:
    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql)


@pytest.fixture
def schema(unique_name: str) -> Iterator[str]:
    name = f"Names {unique_name}"
    _execute(f'CREATE SCHEMA "{name}"; CREATE TABLE "{name}"."Parts" (id int PRIMARY KEY); '
             f'CREATE TABLE "{name}"."PARTS" (id int PRIMARY KEY); CREATE TABLE "{name}".orders (id int PRIMARY KEY)')
    yield name
    _execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.mark.parametrize(("table", "refusal"), [
    ("parts", r"table 'parts' matches \['PARTS', 'Parts'\] ignoring case|table 'parts' matches \['Parts', 'PARTS'\]"),
    ("ordres", r"not found in the source; did you mean 'ordres' -> 'orders'\?"),
])
def test_a_table_name_that_matches_none_or_several_is_refused_with_what_is_there(
    schema: str, table: str, refusal: str
) -> None:
    engine = connect(SourceConfig(url=URL))
    with pytest.raises(SourceError, match=refusal):
        discover(engine, TableConfig(name=f'"{schema.upper()}".{table}'))
    assert discover(engine, TableConfig(name=f'"{schema.lower()}".ORDERS')).table.name == "orders"


def test_a_missing_schema_is_named(schema: str) -> None:
    with pytest.raises(SourceError, match=r"table 'Nowhere.orders': schema 'Nowhere' not found in the source"):
        discover(connect(SourceConfig(url=URL)), TableConfig(name="Nowhere.orders"))
