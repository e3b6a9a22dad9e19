"""Reading a keyed table as Arrow record batches through ADBC (SQLite, PostgreSQL): the driver builds
the columns in C, so no Python object is made per value.

The DBAPI reader (`dbapi_stream`) stays the reference. A chunk the columnar conversion cannot take
exactly (a bad value to quarantine, a type it does not convert) is read again through it, by the
chunk's key range (`ArrowChunk.reference`); a table whose columns this reader does not map exactly
is read through it from the start; an error of the Arrow stream (SQLite's per-batch type inference
meeting a value of another type) resumes the Arrow stream after the last key handed out, and after
`_RESTARTS` of them the DBAPI reader reads the rest. After a chunk read again, the Arrow stream also
starts anew after the last key handed out, so that one stray value does not type the rest of it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from shared import logs
from shared.extractor.chunk_size import FIXED_VALUE_BYTES, long_value_positions
from shared.extractor.dbapi_stream import (
    KeyBound,
    Processor,
    Select,
    SourceChunk,
    processor_for,
    resume_value,
    statement,
    stream_dbapi,
)
from shared.schema import TableSchema
from shared.secrets import error_line

log = logs.get(__name__)
READER_ENV = "MATRIX_SOURCE_READER"  # "dbapi" turns this reader off
READER_CHOICES = ("", "arrow", "dbapi")
_RESTARTS = 3
_OVERSIZED = 4  # a batch this many times extract.chunk_bytes is read by the DBAPI reader instead
_PG_BATCH_BYTES = 4 << 20

# PostgreSQL types whose ADBC Arrow values are the values psycopg2 returns (numeric as its text, as
# dbapi_stream reads it), by type name, with the type OID SQLAlchemy's result processor is chosen by.
# float4 is not among them: psycopg2 parses its shortest text, ADBC widens the binary float.
_PG_TYPES = {"int2": 21, "int4": 23, "int8": 20, "float8": 701, "numeric": 1700, "bool": 16, "text": 25,
             "varchar": 1043, "bpchar": 1042, "date": 1082, "timestamp": 1114, "timestamptz": 1184, "bytea": 17}

# SQLite: the BigQuery types a column of each affinity converts exactly whatever ADBC's per-batch type
# inference makes of it. Where storage classes mix within a batch, ADBC widens the column (to string,
# double or binary); for these pairs every widened column is refused by the conversion (then read
# again by the reference) or holds the values the DBAPI driver returns (integers widened to doubles
# for a decimal, which `columnar_convert` accepts only below 2**53, as the DBAPI path does).
# TEXT affinity stores numbers as text, so a STRING column never holds a number to be widened.
_SQLITE_SAFE = {"INTEGER": {"INT64", "BOOL"}, "TEXT": {"STRING"}, "REAL": {"FLOAT64"},
                "NUMERIC": {"NUMERIC", "BIGNUMERIC", "DATE", "DATETIME", "TIMESTAMP", "BOOL"}}


class _NotArrow(Exception):
    """The result has a column this reader does not convert exactly: the DBAPI reader reads it."""


class ArrowChunk(Sequence[tuple]):
    """Up to chunk_rows rows as Arrow columns, in the table's column order, with SQLAlchemy's result
    processor of each column. Indexing or iterating gives the rows the DBAPI reader returns for the
    chunk's key range (read again on first use): the snapshot converts `columns` instead."""

    __slots__ = ("columns", "processors", "last_key", "exact", "_reference", "_rows")

    def __init__(self, columns: list[pa.Array], processors: Sequence[Processor], last_key: tuple,
                 reference: Callable[[], SourceChunk], exact: bool = True) -> None:
        self.columns = columns
        self.processors = tuple(processors)
        self.last_key = last_key
        self.exact = exact  # the columns hold the stored values exactly, so a raw hash tells rows apart
        self._reference = reference
        self._rows: SourceChunk | None = None

    def only(self, mask: pa.Array) -> ArrowChunk:
        """The rows where `mask` is true; its reference is still the whole key range."""
        return ArrowChunk([column.filter(mask) for column in self.columns], self.processors, self.last_key,
                          self._reference, self.exact)

    def reference(self) -> SourceChunk:
        """The same key range read by the DBAPI reader."""
        if self._rows is None:
            self._rows = self._reference()
        return self._rows

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    @overload
    def __getitem__(self, index: int) -> tuple: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple]: ...

    def __getitem__(self, index: int | slice) -> tuple | list[tuple]:
        return self.reference()[index]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.reference())

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ArrowReader:
    """How to read one table through ADBC: a connection, the dialect compiling its statements with
    the driver's parameter style, and the per-batch options of the driver."""

    connect: Callable[[], Any]
    dialect: sa.Dialect
    options: Callable[[int, int | None], dict[str, str]]  # by chunk_rows and chunk_bytes
    processors: Callable[[pa.Schema], list[Processor]]
    columns: Callable[[sa.Select], sa.Select] = lambda query: query  # what the driver is asked for
    inline_bounds: bool = False  # key bounds written into the SQL, not bound as parameters
    exact: Callable[[list[pa.Array]], bool] = lambda columns: True  # a chunk's values are the stored ones


def arrow_reader(connection: sa.Connection, table: sa.Table, schema: TableSchema) -> ArrowReader | None:
    """The ADBC reader of this table, or None where the DBAPI reader is the one (no key to resume
    after, no ADBC driver installed, a source or column type not mapped exactly here)."""
    if os.environ.get(READER_ENV, "").strip().lower() == "dbapi" or not schema.key or schema.keyless:
        return None
    dialect = connection.dialect
    if dialect.name == "sqlite" and dialect.driver == "pysqlite" and _installed("adbc_driver_sqlite"):
        return _sqlite_reader(connection, table, schema)
    if dialect.name == "postgresql" and dialect.driver == "psycopg2" and _installed("adbc_driver_postgresql"):
        return _postgresql_reader(connection, table)
    return None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _sqlite_reader(connection: sa.Connection, table: sa.Table, schema: TableSchema) -> ArrowReader | None:
    url = connection.engine.url
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query:
        return None
    if table.schema not in (None, "main"):  # an attached database: not in the file ADBC opens
        return None
    quoted = connection.dialect.identifier_preparer.quote(table.name)
    declared = {row[1]: row[2] for row in connection.exec_driver_sql(f"PRAGMA table_info({quoted})")}
    if any(c.bq_type.upper() not in _SQLITE_SAFE.get(_affinity(declared.get(c.name, "")), ()) for c in schema.columns):
        return None
    dialect = connection.dialect
    columns = list(table.columns)

    def connect() -> Any:
        import adbc_driver_sqlite.dbapi

        return adbc_driver_sqlite.dbapi.connect(path)

    def processors(_schema: pa.Schema) -> list[Processor]:
        return [processor_for(column, dialect, None) for column in columns]

    widest: list[int] = []  # the table's widest row, measured once for every (re)start of the stream

    def options(chunk_rows: int, chunk_bytes: int | None) -> dict[str, str]:
        if chunk_bytes is None:
            return {"adbc.sqlite.query.batch_rows": str(chunk_rows)}
        if not widest:
            with contextlib.closing(connect()) as adbc:
                widest.append(_sqlite_widest_row(adbc, dialect.identifier_preparer.quote, table.name, schema))
        return {"adbc.sqlite.query.batch_rows": str(_sqlite_batch_rows(widest[0], chunk_rows, chunk_bytes))}

    affinities = [_affinity(declared.get(column.name, "")) for column in columns]

    def exact(arrays: list[pa.Array]) -> bool:
        return all(_stored_values(array, affinity) for array, affinity in zip(arrays, affinities, strict=True))

    return ArrowReader(connect, dialect, options, processors, exact=exact)


def _stored_values(array: pa.Array, affinity: str) -> bool:
    """Whether ADBC's column of a batch holds the values SQLite stored, exactly. Where storage classes
    mix in a batch it widens the column: integers to doubles (inexact past 2**53), numbers to text
    ('1.000000e+00' for 1.0000001), anything beside a blob to bytes (0 and X'30' both b'0').
    Converting such a chunk falls back to the DBAPI reader, but a raw hash of it could take a
    changed row for an unchanged one."""
    kind = array.type
    if pa.types.is_null(kind) or pa.types.is_integer(kind):
        return True
    if pa.types.is_floating(kind):
        if affinity == "REAL":  # REAL affinity stores every number as a float: nothing was widened
            return True
        largest = pc.max(pc.abs(array)).as_py()
        return largest is None or largest < 2**53
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # Only TEXT affinity keeps a number as text; the others store number-like text as the number,
        # so a number among their texts is one ADBC wrote
        return affinity == "TEXT" or not pc.any(pc.match_substring_regex(array, _NUMBER_TEXT)).as_py()
    return False


_NUMBER_TEXT = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


_MIN_BATCH_ROWS = 16  # fewer rows a batch than this, and the DBAPI reader reads the table


def _sqlite_widest_row(adbc: Any, quote: Callable[[str], str], table: str, schema: TableSchema) -> int:
    """The bytes of the table's widest row: its long values' bytes (0 without long-value columns),
    plus `FIXED_VALUE_BYTES` a column. SQLite answers `octet_length` of a column from the record
    header, without reading the value (ADBC bundles SQLite 3.43+; Python's sqlite3 may be older), so
    every row is measured at the cost of a scan of the table's pages without their overflow pages:
    about 0.1 s a million narrow rows, milliseconds for a few hundred 9 MB ones."""
    long = [schema.columns[p].name for p in long_value_positions(schema)]
    widest = 0
    if long:
        width = " + ".join(f"coalesce(octet_length({quote(name)}), 0)" for name in long)
        with contextlib.closing(adbc.cursor()) as cursor:
            cursor.execute(f"SELECT max({width}) FROM {quote(table)}")
            widest = int(cursor.fetchone()[0] or 0)
    return widest + FIXED_VALUE_BYTES * len(schema.columns)


def _sqlite_batch_rows(widest_row: int, chunk_rows: int, chunk_bytes: int) -> int:
    """Rows a batch of SQLite's Arrow reader holds: ADBC fixes them per statement, before any row is
    seen, so they are the rows of the table's widest width the budget holds (`_sqlite_widest_row`):
    no batch passes the budget, wherever its wide rows stand in the table. Where that leaves fewer
    than `_MIN_BATCH_ROWS` a batch, the DBAPI reader reads the table instead (a few rows a fetch):
    ADBC's batches of a row or two cost ten times the time a row, and its per-batch type inference
    fails more often on sparse columns."""
    fits = chunk_bytes // max(1, widest_row)
    if fits < _MIN_BATCH_ROWS:
        raise _NotArrow(f"rows up to {widest_row:,} bytes: {fits} of them a batch fill extract.chunk_bytes")
    return min(chunk_rows, fits)


def _affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (https://sqlite.org/datatype3.html, 3.1)."""
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _postgresql_reader(connection: sa.Connection, table: sa.Table) -> ArrowReader:
    engine = connection.engine
    uri = _libpq_uri(engine.url)
    dialect = type(engine.dialect)(paramstyle="numeric_dollar")
    columns = list(table.columns)
    as_text = {column.name for column in columns if _is_numeric(column)}

    def connect() -> Any:
        import adbc_driver_postgresql.dbapi

        return adbc_driver_postgresql.dbapi.connect(uri)

    def numerics_as_text(query: sa.Select) -> sa.Select:
        return query.with_only_columns(*(sa.cast(_as_selected(c), sa.Text).label(c.name) if c.name in as_text else c
                                         for c in query.selected_columns), maintain_column_froms=True)

    def processors(result: pa.Schema) -> list[Processor]:
        names = [(f.metadata or {}).get(b"POSTGRESQL:type", b"").decode() for f in result]
        names = ["numeric" if column.name in as_text and name == "text" else name
                 for column, name in zip(columns, names, strict=True)]
        unmapped = sorted({name for name in names if name not in _PG_TYPES})
        if unmapped:
            raise _NotArrow(f"PostgreSQL type(s) {unmapped}")
        # bytea arrives as bytes, the value SQLAlchemy's processor makes of psycopg2's memoryview
        return [None if name == "bytea" else processor_for(column, engine.dialect, _PG_TYPES[name])
                for column, name in zip(columns, names, strict=True)]

    def options(_rows: int, chunk_bytes: int | None) -> dict[str, str]:
        hint = _PG_BATCH_BYTES if chunk_bytes is None else min(_PG_BATCH_BYTES, chunk_bytes // 2)
        return {"adbc.postgresql.batch_size_hint_bytes": str(hint)}

    return ArrowReader(connect, dialect, options, processors, numerics_as_text, inline_bounds=True)


def _libpq_uri(url: sa.engine.URL) -> str:
    """The URL as libpq reads it: it percent-decodes the query but takes '+' for itself, where
    SQLAlchemy writes a space (the session `options`) as '+'."""
    uri = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    query = urllib.parse.urlencode(dict(url.query), doseq=True, quote_via=urllib.parse.quote)
    return f"{uri}?{query}" if query else uri


def _as_selected(column: sa.ColumnElement) -> sa.ColumnElement:
    """The column as its type selects it (`read_types.PgMoney` casts money to numeric)."""
    expression = column.type.column_expression(column)
    return column if expression is None else expression


def _is_numeric(column: sa.Column) -> bool:
    """numeric is read as PostgreSQL's own text, the text psycopg2 gets: the same values, and the
    driver's binary numeric decoding (about 0.7 CPU-s per million values) left out."""
    return isinstance(column.type, sa.Numeric) and not isinstance(column.type, sa.Float)


def stream_arrow(reader: ArrowReader, connection: sa.Connection, engine: sa.Engine, schema: TableSchema,
                 select: Select, chunk_rows: int, lower: KeyBound,
                 upper: KeyBound, *, chunk_bytes: int | None = None) -> Iterator[ArrowChunk | SourceChunk]:
    """Rows with lower < key <= upper as `ArrowChunk`s of at most chunk_rows rows, fewer once they
    hold chunk_bytes of Arrow buffers; see the module docstring for what the DBAPI reader (on
    `connection`) takes over."""
    fell_back = threading.Event()

    def reference(low: KeyBound, high: KeyBound) -> SourceChunk:
        fell_back.set()
        with engine.connect() as own:  # the stream's connection is busy on the reader thread
            chunks = list(stream_dbapi(own, schema, select, chunk_rows, low, high))
        processors = chunks[0].processors if chunks else (None,) * len(schema.columns)
        return SourceChunk([row for chunk in chunks for row in chunk.raw], processors)

    attempt = 0
    while attempt <= _RESTARTS:
        try:
            for chunk in _chunks(reader, schema, select(lower, upper), chunk_rows, chunk_bytes, lower, reference):
                yield chunk
                lower = chunk.last_key
                if fell_back.is_set():  # SQLite may have typed a column by a stray value: infer again
                    fell_back.clear()
                    break
            else:
                return
            continue
        except _NotArrow as why:
            log.info("reading through the DBAPI driver: %s", why)
            break
        except Exception as error:  # the driver's own error types; the DBAPI reader has the last word
            attempt += 1
            log.info("Arrow stream interrupted (%s: %s); %s", type(error).__name__, error_line(error),
                     "resuming after the last key" if attempt <= _RESTARTS else "the DBAPI reader reads the rest")
    yield from stream_dbapi(connection, schema, select, chunk_rows, lower, upper, chunk_bytes=chunk_bytes)


def _chunks(reader: ArrowReader, schema: TableSchema, query: sa.Select, chunk_rows: int, chunk_bytes: int | None,
            lower: KeyBound, reference: Callable[[KeyBound, KeyBound], SourceChunk]) -> Iterator[ArrowChunk]:
    sql, parameters = _statement(reader, schema, reader.columns(query))
    with contextlib.closing(reader.connect()) as adbc, contextlib.closing(adbc.cursor()) as cursor:
        cursor.adbc_statement.set_options(**reader.options(chunk_rows, chunk_bytes))
        cursor.execute(sql, parameters or None)
        batches = cursor.fetch_record_batch()
        processors = reader.processors(batches.schema)
        for columns in _rechunked(batches, chunk_rows, chunk_bytes):
            last_key = tuple(resume_value(processors[p], columns[p][-1].as_py()) for p in schema.key_positions)
            low = lower
            yield ArrowChunk(columns, processors, last_key, lambda low=low, high=last_key: reference(low, high),
                             reader.exact(columns))
            lower = last_key


def _statement(reader: ArrowReader, schema: TableSchema, query: sa.Select) -> tuple[str, Any]:
    """ADBC's PostgreSQL driver reads a statement with parameters in one batch, whatever its batch
    size hint (only a statement without them is streamed through COPY): a range after a key, a
    resumed stream or a parallel key range would be held whole. Its key bounds are written into the
    SQL as literals instead, except for binary keys, which have no literal form here."""
    if reader.inline_bounds and not any(c.bq_type.upper() == "BYTES" for c in schema.key_columns):
        try:
            return str(query.compile(dialect=reader.dialect, compile_kwargs={"literal_binds": True})), None
        except (sa.exc.CompileError, NotImplementedError) as error:
            log.info("key bounds bound as parameters (%s): the range is read in one batch", error_line(error))
    return statement(reader.dialect, query)


def _rechunked(batches: pa.RecordBatchReader, chunk_rows: int, chunk_bytes: int | None = None
               ) -> Iterator[list[pa.Array]]:
    """The stream's rows as columns of exactly chunk_rows rows (the last chunk fewer), or of the
    batches held when the next one would take them past chunk_bytes."""
    pending: list[pa.RecordBatch] = []
    held = held_bytes = 0
    for batch in batches:
        if chunk_bytes is not None and batch.nbytes > _OVERSIZED * chunk_bytes:
            raise _NotArrow(f"a batch of {batch.num_rows:,} rows holds {batch.nbytes:,} bytes, past "
                            f"{_OVERSIZED}x extract.chunk_bytes: its rows are wider than the widest measured")
        if chunk_bytes is not None and pending and held_bytes + batch.nbytes > chunk_bytes:
            yield _columns(pending)
            pending, held, held_bytes = [], 0, 0
        pending.append(batch)
        held += batch.num_rows
        held_bytes += batch.nbytes
        while held >= chunk_rows:
            combined = pa.Table.from_batches(pending).combine_chunks()
            yield [column.chunk(0) if column.num_chunks else pa.array([], column.type)
                   for column in combined.slice(0, chunk_rows).combine_chunks().columns]
            rest = combined.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
            held_bytes = sum(b.nbytes for b in pending)
    if held:
        yield _columns(pending)


def _columns(batches: list[pa.RecordBatch]) -> list[pa.Array]:
    combined = pa.Table.from_batches(batches).combine_chunks()
    return [column.chunk(0) for column in combined.columns]
