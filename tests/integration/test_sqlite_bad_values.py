"""SQLite holds any value in any column. A date column's text that is no date is quarantined with
the column's name, wherever it sits in a chunk: as the last row of a chunk it used to stop the read
of the whole table (the reader processed that row entire to learn the key to resume after)."""
from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import SourceConfig, TableConfig
from shared.extractor.arrow_stream import READER_ENV
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.source import connect, discover, stream_rows


@pytest.fixture(params=["arrow", "dbapi"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once through the Arrow reader and once through the DBAPI reader it falls back to."""
    if request.param == "dbapi":
        monkeypatch.setenv(READER_ENV, "dbapi")
    return str(request.param)


@pytest.mark.usefixtures("reader")
def test_a_bad_date_ending_a_chunk_is_quarantined_and_named(tmp_path: Path) -> None:
    database = tmp_path / "bad.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, day DATE, at DATETIME)")
        connection.executemany("INSERT INTO events VALUES (?, ?, ?)", [
            (1, "2024-01-01", "2024-01-01 10:00:00"), (2, " 2024-01-02", "2024-01-02 10:00:00"),
            (3, "2024-01-03", "2024-13-45 00:00:00"), (4, "2024-01-04", None), (5, "2024/01/05", None)])
    engine = connect(SourceConfig(url=f"sqlite:///{database}"))
    try:
        source = discover(engine, TableConfig(name="events", key=["id"]))
        prepare = ChunkPreparer(source.schema)
        kept, reasons = [], {}
        for chunk in stream_rows(engine, source, 2):  # rows 2 and 4 end their chunks
            prepared, quarantined = prepare(chunk)
            kept += prepared.rows
            reasons |= {int(r["key"]["id"]): str(r["reason"]) for r in quarantined}
    finally:
        engine.dispose()
    assert kept == [(1, dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 10)), (4, dt.date(2024, 1, 4), None)]
    assert sorted(reasons) == [2, 3, 5]
    assert reasons[2].startswith("ValueError: day: ") and "' 2024-01-02'" in reasons[2]
    assert reasons[3].startswith("ValueError: at: ")
    assert reasons[5].startswith("ValueError: day: ")


def _read(database: Path, table: str, chunk_rows: int) -> tuple[list[tuple], dict[str, str]]:
    engine = connect(SourceConfig(url=f"sqlite:///{database}"))
    try:
        source = discover(engine, TableConfig(name=table))
        prepare = ChunkPreparer(source.schema)
        kept, reasons = [], {}
        for chunk in stream_rows(engine, source, chunk_rows):
            prepared, quarantined = prepare(chunk)
            kept += prepared.rows
            reasons |= {str(r["key"]["id"]): str(r["reason"]) for r in quarantined}
        return kept, reasons
    finally:
        engine.dispose()


@pytest.mark.usefixtures("reader")
def test_whole_numbers_in_numeric_columns_are_read_exactly(tmp_path: Path) -> None:
    """SQLite keeps a whole number in a NUMERIC column as an integer; SQLAlchemy formatted it as a
    float (9007199254740993 became ...992). A real still lands rounded to the declared scale, as
    SQL Server or PostgreSQL would have stored it."""
    database = tmp_path / "numbers.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE amounts (id INTEGER PRIMARY KEY, a NUMERIC(20,2), b NUMERIC(28,0), "
                           "d NUMERIC(10,2))")
        connection.executemany("INSERT INTO amounts VALUES (?, ?, ?, ?)", [
            (1, 9007199254740993, 9223372036854775807, 0.005), (2, 12.5, -123456789012345678, 1.239),
            (3, 7, 2**53, None)])
    kept, reasons = _read(database, "amounts", 10)
    assert reasons == {}
    assert kept == [(1, Decimal("9007199254740993"), Decimal("9223372036854775807"), Decimal("0.01")),
                    (2, Decimal("12.5"), Decimal("-123456789012345678"), Decimal("1.24")),
                    (3, Decimal(7), Decimal(2**53), None)]


@pytest.mark.usefixtures("reader")
def test_a_json_column_lands_as_the_text_it_holds(tmp_path: Path) -> None:
    """SQLAlchemy's JSON type parsed each value: objects and text that is no JSON were quarantined,
    '"hello"' lost its quotes and the text 'null' became NULL."""
    database = tmp_path / "documents.db"
    texts = ['{"b": 1.50, "a": [true, null]}', "[1, 2]", "not json", '"hello"', "null", "", None]
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY, body JSON)")
        connection.executemany("INSERT INTO documents VALUES (?, ?)", list(enumerate(texts)))
    kept, reasons = _read(database, "documents", 3)
    assert reasons == {}
    assert kept == list(enumerate(texts))


@pytest.mark.usefixtures("reader")
@pytest.mark.parametrize(("declared", "bad", "good"), [("DATE", ["1999-99-99", "x"], ["2024-01-01", "2024-02-29"]),
                                                        ("NUMERIC(10,2)", ["abc"], [1.5, 2])])
def test_a_key_its_converter_refuses_is_quarantined_even_ending_a_chunk(
    tmp_path: Path, declared: str, bad: list[str], good: list[object]
) -> None:
    """The read resumes after each chunk's last key: one the driver's converter refused (text that
    is no date, sorting last) failed the whole table instead of being quarantined."""
    database = tmp_path / "keys.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"CREATE TABLE keyed (id {declared} PRIMARY KEY, v TEXT)")
        connection.executemany("INSERT INTO keyed VALUES (?, 'v')", [(key,) for key in [*good, *bad]])
    for chunk_rows in (1, 2, 10):
        kept, reasons = _read(database, "keyed", chunk_rows)
        assert len(kept) == len(good) and sorted(reasons) == sorted(map(repr, bad)), (chunk_rows, kept, reasons)


@pytest.mark.usefixtures("reader")
def test_a_boolean_column_takes_0_and_1_and_quarantines_the_rest(tmp_path: Path) -> None:
    """SQLAlchemy took any truthy value for TRUE: 2, -1, 'false' and X'00' all landed as TRUE."""
    database = tmp_path / "flags.db"
    values = [0, 1, None, 2, -1, "false", "t", b"\x00"]
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE flags (id INTEGER PRIMARY KEY, active BOOLEAN)")
        connection.executemany("INSERT INTO flags VALUES (?, ?)", list(enumerate(values)))
    kept, reasons = _read(database, "flags", 4)
    assert kept == [(0, False), (1, True), (2, None)]
    assert sorted(reasons) == ["3", "4", "5", "6", "7"], reasons
    assert all("boolean" in reason or "BOOL" in reason for reason in reasons.values()), reasons
