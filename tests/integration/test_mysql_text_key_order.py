"""A MariaDB text key in any character set is streamed, split into parallel key ranges and resumed in
code point order, the order Python compares keys in: a latin1 key sorted by its cp1252 bytes ('€'
is 0x80) while its bounds went as UTF-8, so ranges overlapped (rows extracted twice) and every
delta found its keys out of order. Against the real server on 127.0.0.1:3306."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from shared.config import SourceConfig, TableConfig
from shared.extractor.key_order import KeyOrder
from shared.extractor.source import SourceTable, connect, discover, key_boundaries, stream_rows

URL = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
KEYS = [prefix + str(i) for prefix in "€Ðéþ" for i in range(20)]
CHARSETS = [("latin1", "latin1_bin"), ("latin1", "latin1_swedish_ci"), ("utf8mb4", "utf8mb4_general_ci"),
            ("utf8mb3", "utf8mb3_bin")]


@pytest.fixture(params=CHARSETS, ids=["/".join(c) for c in CHARSETS])
def source(request: pytest.FixtureRequest, unique_name: str) -> Iterator[tuple[sa.Engine, SourceTable]]:
    charset, collation = request.param
    name = f"text_key_order_{unique_name}"
    admin = sa.create_engine(URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {name} (k VARCHAR(40) CHARACTER SET {charset} COLLATE {collation} "
                                   "NOT NULL PRIMARY KEY, v INT NOT NULL)")
        connection.execute(sa.text(f"INSERT INTO {name} VALUES (:k, :v)"),
                           [{"k": k, "v": i} for i, k in enumerate(reversed(KEYS))])
    engine = connect(SourceConfig(url=URL))
    try:
        yield engine, discover(engine, TableConfig(name=name))
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        admin.dispose()


def _keys(engine: sa.Engine, source: SourceTable, lower: tuple | None = None, upper: tuple | None = None) -> list[str]:
    order = KeyOrder("source")  # what a delta's merge join checks
    keys = []
    for chunk in stream_rows(engine, source, 7, lower, upper):  # resumed after each chunk's last key
        for row in chunk:
            order.check((row[0],))
            keys.append(row[0])
    return keys


def test_the_stream_is_in_code_point_order(source: tuple[sa.Engine, SourceTable]) -> None:
    assert _keys(*source) == sorted(KEYS)


def test_parallel_key_ranges_hold_every_key_once(source: tuple[sa.Engine, SourceTable]) -> None:
    engine, table = source
    bounds = key_boundaries(engine, table, 4, min_rows=20)
    assert bounds == [(sorted(KEYS)[i],) for i in (19, 39, 59)]  # Ð9, é9, þ9; € last
    ranges = [_keys(engine, table, lower, upper) for lower, upper in zip([None, *bounds], [*bounds, None], strict=True)]
    assert [len(keys) for keys in ranges] == [20, 20, 20, 20]
    assert [key for keys in ranges for key in keys] == sorted(KEYS)
