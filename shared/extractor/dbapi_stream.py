"""Reading rows straight from the DBAPI cursor: no SQLAlchemy Row per row, the driver's values kept
column-ready for the snapshot, SQLAlchemy's result processors applied only where a value needs them."""
from __future__ import annotations

import decimal
import functools
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import sqlalchemy as sa

from shared import exact_processors
from shared.extractor.chunk_size import (
    FETCH_ROWS,
    FIXED_VALUE_BYTES,
    fetch_rows,
    gathered,
    long_value_positions,
    row_bytes,
)
from shared.schema import TableSchema

KeyBound = tuple | None
Select = Callable[[KeyBound, KeyBound], sa.Select]


Processor = Callable[[object], object] | None


class SourceChunk(Sequence[tuple]):
    """Up to chunk_rows rows as the DBAPI driver returned them, with SQLAlchemy's result processor
    of each column (None: the driver's value is final). Indexing or iterating gives processed rows,
    the values a SQLAlchemy Row would hold; the snapshot reads `raw` column by column instead."""

    __slots__ = ("raw", "processors")

    def __init__(self, raw: list[tuple], processors: Sequence[Processor]) -> None:
        self.raw = raw
        self.processors = tuple(processors)

    def process(self, row: tuple) -> tuple:
        """One raw row as SQLAlchemy would return it; raises what a processor raises."""
        return tuple(value if p is None or value is None else p(value)
                     for p, value in zip(self.processors, row, strict=True))

    def last_key(self, positions: Sequence[int]) -> tuple:
        """The last row's key, only its key columns processed: a bad value elsewhere in that row is
        for the snapshot to quarantine, not a reason to stop reading."""
        row = self.raw[-1]
        return tuple(resume_value(self.processors[p], row[p]) for p in positions)

    def __len__(self) -> int:
        return len(self.raw)

    @overload
    def __getitem__(self, index: int) -> tuple: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple]: ...

    def __getitem__(self, index: int | slice) -> tuple | list[tuple]:
        if isinstance(index, slice):
            return [self.process(row) for row in self.raw[index]]
        return self.process(self.raw[index])

    def __iter__(self) -> Iterator[tuple]:
        return (self.process(row) for row in self.raw)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


def stream_dbapi(connection: sa.Connection, schema: TableSchema, select: Select, chunk_rows: int, lower: KeyBound,
                 upper: KeyBound, *, chunk_bytes: int | None = None,
                 widest_row: int | None = None) -> Iterator[SourceChunk]:
    """Chunks of at most chunk_rows rows, fewer once they hold about chunk_bytes (`chunk_size`; the
    table's widest row, where known (`sqlite_widest_row`), lets a fetch ask for more rows).
    SQLite text is first decoded strictly, in C; only if some value is not UTF-8 does the rest of
    the table (after the last key handed out) go through `connect`'s tolerant decoder, in Python."""
    dialect = connection.dialect
    driver_connection = connection.connection.driver_connection
    tolerant = getattr(driver_connection, "text_factory", None) if dialect.name == "sqlite" else None
    # Resuming after the last key needs a key; a keyless table is decoded tolerantly throughout.
    strict = tolerant is not None and tolerant is not str and bool(schema.key)
    size = row_bytes(len(schema.columns), long_value_positions(schema))
    most = fetch_rows(schema, fetches_round_trip(dialect), chunk_bytes, widest_row)
    try:
        while True:
            if strict:
                driver_connection.text_factory = str
            query = select(lower, upper)
            try:
                for chunk in _stream_cursor(_server_side_cursor(connection), dialect, query, chunk_rows,
                                            chunk_bytes, size, most):
                    yield chunk
                    lower = chunk.last_key(schema.key_positions)
                return
            except sqlite3.OperationalError as error:
                if not strict or "decode" not in str(error):
                    raise
                strict = False
                driver_connection.text_factory = tolerant
    finally:
        if tolerant is not None:
            driver_connection.text_factory = tolerant


def _server_side_cursor(connection: sa.Connection) -> Any:
    """A DBAPI cursor that fetches from the server a batch at a time."""
    dialect = connection.dialect
    driver_connection = connection.connection.driver_connection
    if dialect.name == "postgresql":
        cursor = driver_connection.cursor(name=f"matrix_sync_{secrets.token_hex(6)}")  # a named cursor is server-side
        for caster in (_pg_numeric_as_text(dialect.dbapi), _pg_text_kept(dialect.dbapi),
                       *_pg_temporal_unchanged(dialect.dbapi)):
            dialect.dbapi.extensions.register_type(caster, cursor)
        return cursor
    if dialect.name in ("mysql", "mariadb"):
        return driver_connection.cursor(dialect.dbapi.cursors.SSCursor)  # the driver module: pymysql
    return driver_connection.cursor()  # sqlite3 steps through the result as rows are fetched


def sqlite_widest_row(connection: sa.Connection, table: sa.Table, schema: TableSchema) -> int:
    """The bytes of a SQLite table's widest row: its long values' bytes, plus `FIXED_VALUE_BYTES` a
    column. From SQLite 3.43 `octet_length` of a column is answered from the record header without
    reading the value; before, `length` of the value as a blob reads it (about 0.1 s a million
    narrow rows either way; the second costs a read of every long value more)."""
    long = [table.columns[schema.columns[p].name] for p in long_value_positions(schema)]
    if long:
        bytes_of = (sa.func.octet_length if sqlite3.sqlite_version_info >= (3, 43)
                    else lambda c: sa.func.length(sa.cast(c, sa.LargeBinary)))
        width = sum((sa.func.coalesce(bytes_of(c), 0) for c in long), sa.literal(0))
        widest = int(connection.execute(sa.select(sa.func.max(width)).select_from(table)).scalar() or 0)
    else:
        widest = 0
    return widest + FIXED_VALUE_BYTES * len(schema.columns)


def fetches_round_trip(dialect: sa.Dialect) -> bool:
    """Whether each fetch from a streaming result is a round trip to the server: PostgreSQL's
    server-side cursors (psycopg2's named cursor sends FETCH FORWARD n). sqlite3 steps the statement,
    pymysql's SSCursor and pymssql read the rows the server streams, as they are fetched."""
    return dialect.name == "postgresql"


_PG_NUMERIC_OID = 1700


@functools.cache
def _pg_numeric_as_text(psycopg2: Any) -> Any:
    """psycopg2 makes a Decimal of PostgreSQL's numeric text (a Python object a value); kept as
    text, a column of them converts at once. `decimal.Decimal` makes the driver's value again."""
    return psycopg2.extensions.new_type((_PG_NUMERIC_OID,), "MATRIX_SYNC_NUMERIC_TEXT", lambda value, _cursor: value)


def resume_value(processor: Processor, value: object) -> object:
    """A key value to resume the key-ordered read after: processed, or where its processor refuses
    it (SQLite text that is no date in a DATE key) as the driver returned it, which the source
    compares as it stored it. Its row is quarantined by the snapshot, not the table failed."""
    if processor is None or value is None:
        return value
    try:
        return processor(value)
    except Exception:  # noqa: BLE001 - a driver value its processor refuses, whatever it raises
        return value


def processor_for(column: sa.ColumnElement, dialect: sa.Dialect, type_code: object) -> Processor:
    """SQLAlchemy's result processor of a column (whole numbers exact where it makes decimals), after
    `decimal.Decimal` where numeric came as text."""
    processor = exact_processors.exact(column.type.dialect_impl(dialect).result_processor(dialect, type_code))
    if dialect.name != "postgresql" or type_code != _PG_NUMERIC_OID:
        return processor
    if processor is None:
        return decimal.Decimal
    return lambda text: processor(decimal.Decimal(text))  # type: ignore[arg-type]


_RAW_DRIVERS = {("sqlite", "pysqlite"), ("postgresql", "psycopg2"), ("mysql", "pymysql"), ("mariadb", "pymysql")}


def reads_from_cursor(dialect: sa.Dialect) -> bool:
    """Drivers read straight from their DBAPI cursor (the rest, pymssql included, through SQLAlchemy)."""
    return (dialect.name, dialect.driver) in _RAW_DRIVERS


def raw_rows(connection: sa.Connection, query: sa.Select, chunk_rows: int) -> Iterator[list[tuple]]:
    """The rows of `query` as the driver returns them, no result processor applied, a chunk at a time."""
    for chunk in _stream_cursor(_server_side_cursor(connection), connection.dialect, query, chunk_rows):
        yield chunk.raw


def _stream_cursor(cursor: Any, dialect: sa.Dialect, query: sa.Select, chunk_rows: int, chunk_bytes: int | None = None,
                   size: Callable[[list], int] = len, most: int = FETCH_ROWS) -> Iterator[SourceChunk]:
    sql, parameters = statement(dialect, query)
    try:
        cursor.execute(sql, parameters)
        processors: list[Processor] | None = None
        for rows in gathered(cursor.fetchmany, chunk_rows, chunk_bytes, size, most):
            if processors is None:  # a named cursor describes its columns once rows arrive
                processors = [processor_for(column, dialect, description[1])
                              for column, description in zip(query.selected_columns, cursor.description, strict=True)]
            yield SourceChunk(rows, processors)
    finally:
        cursor.close()


def statement(dialect: sa.Dialect, query: sa.Select) -> tuple[str, Any]:
    """The statement SQLAlchemy would send: compiled SQL and bound values after the bind processors."""
    compiled = query.compile(dialect=dialect)
    values = compiled.construct_params()
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None and name in values:
            values[name] = process(values[name])
    if compiled.positional:
        return str(compiled), tuple(values[name] for name in compiled.positiontup or ())
    return str(compiled), values


_PG_JSON_OID, _PG_JSONB_OID, _PG_INTERVAL_OID = 114, 3802, 1186


@functools.cache
def _pg_text_kept(psycopg2: Any) -> Any:
    """json, jsonb and interval land in STRING as PostgreSQL's own text: psycopg2 would make them
    dicts and lists (no STRING) and timedeltas (a month taken as 30 days)."""
    return psycopg2.extensions.new_type((_PG_JSON_OID, _PG_JSONB_OID, _PG_INTERVAL_OID), "MATRIX_SYNC_TEXT",
                                        lambda value, _cursor: value)


_PG_TEMPORAL_OIDS = {1082: "DATE", 1083: "TIME", 1114: "TIMESTAMP", 1184: "TIMESTAMPTZ"}


@functools.cache
def _pg_temporal_unchanged(psycopg2: Any) -> tuple[Any, ...]:
    """psycopg2 reads 'infinity' as date.max or datetime.max (and '-infinity' as their min), reads
    '24:00:00' as 00:00, and fails the whole fetch on a BC date or a year past 9999. Such a value
    stays the text PostgreSQL sent, which no converter takes for a date or time: its row is
    quarantined with the reason, and the rest of the table is read."""
    def caster(oid: int, name: str) -> Any:
        default = psycopg2.extensions.string_types[oid]

        def cast(value: str | None, cursor: Any) -> object:
            if value is None or value.endswith("infinity") or value.startswith("24:"):
                return value
            try:
                return default(value, cursor)
            except ValueError:
                return value
        return psycopg2.extensions.new_type((oid,), f"MATRIX_SYNC_{name}", cast)

    return tuple(caster(oid, name) for oid, name in _PG_TEMPORAL_OIDS.items())
