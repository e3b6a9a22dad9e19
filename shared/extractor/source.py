"""Reading a source table: its schema from the catalog, its rows as a bounded stream of chunks."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pydantic
import sqlalchemy as sa
import sqlalchemy.dialects.mysql
import sqlalchemy.dialects.postgresql
from sqlalchemy.engine import Engine

from shared import identifiers, logs
from shared.config import SourceConfig, TableConfig
from shared.credentials import source_url
from shared.extractor import engines, pg_domains, sqlite_types
from shared.extractor.arrow_stream import READER_CHOICES, READER_ENV, arrow_reader, stream_arrow
from shared.extractor.chunk_size import fetch_rows, gathered, long_value_positions, row_bytes
from shared.extractor.dbapi_stream import (
    fetches_round_trip,
    raw_rows,
    reads_from_cursor,
    sqlite_widest_row,
    stream_dbapi,
)
from shared.extractor.read_types import PgText, read_as
from shared.identifiers import IdentifierError
from shared.mssql.catalog import DEFAULT_SCHEMA, MssqlCatalogError, discover_mssql
from shared.mssql.select import MssqlSelect, count_statement, select_statement
from shared.schema import Column, TableSchema
from shared.secret_manager import SecretAccessError
from shared.secrets import error_line, redact, register_url
from shared.source_names import SourceNameError, matched, matched_all, nearest
from shared.types import TypeMappingError, bigquery_type_for_sqlalchemy, type_parameters

log = logs.get(__name__)


class SourceError(RuntimeError):
    """The source cannot be reached or does not hold what the config names."""


class SourceLost(SourceError):
    """The source stopped answering after it was connected to (a server restarting mid-extraction):
    the request is handed back as when it cannot be reached at connect time."""


# Driver errors that mean the source user may not read the table, whoever retries: (PostgreSQL's
# SQLSTATE; MySQL/MariaDB's and SQL Server's error numbers). SQLite has no privileges.
_DENIED_SQLSTATES = {"42501"}  # insufficient_privilege
_DENIED_NUMBERS = {1142, 1143, 1044,  # MySQL/MariaDB: command denied, column command denied, access denied
                   229, 230}  # SQL Server: the permission was denied on the object / on the column
# ... and those that mean the connection went (or cannot be made): SQLSTATE class 08 and the
# shutdown codes; MySQL's can't connect, server gone away, lost connection; pymssql's unreachable
# server, connection refused, DBPROCESS dead.
_LOST_SQLSTATES = {"57P01", "57P02", "57P03"}
_LOST_NUMBERS = {2003, 2006, 2013, 20009, 20003, 20047}


def source_failure(table: str, error: BaseException) -> SourceError | None:
    """What a driver's error met while extracting `table` says about the source: a SourceError (a
    privilege the source user lacks: the table fails alone until someone grants it) or a SourceLost
    (the source went away). None for any other error (`unexpected`)."""
    for cause in _causes(error):
        code = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
        number = cause.args[0] if cause.args and isinstance(cause.args[0], int) else None
        if code in _DENIED_SQLSTATES or (number in _DENIED_NUMBERS and _from_driver(cause, "pymysql", "pymssql")):
            return SourceError(f"table {table!r}: the source user may not read it ({_driver_line(cause, number)}); "
                               "grant it SELECT on the table")
        lost_code = isinstance(code, str) and (code.startswith("08") or code in _LOST_SQLSTATES)
        if lost_code or _lost_psycopg2(cause, code) or (number in _LOST_NUMBERS
                                                         and _from_driver(cause, "pymysql", "pymssql")):
            return SourceLost(f"lost the source while extracting table {table!r}: {_driver_line(cause, number)}")
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error, the DBAPI error SQLAlchemy wrapped (`orig`), and the errors it was raised from."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        cause = pending.pop(0)
        if cause is None or id(cause) in seen or len(seen) > 10:
            continue
        seen.add(id(cause))
        yield cause
        orig = getattr(cause, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None, cause.__cause__, cause.__context__]


def _driver_line(error: BaseException, number: int | None) -> str:
    """The error's type and first line, secrets removed; pymysql's and pymssql's as `number message`."""
    if number is None or len(error.args) < 2:
        return f"{type(error).__name__}: {error_line(error)}"
    message = error.args[1]
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{type(error).__name__}: {number} {error_line(RuntimeError(text))}"


def _from_driver(error: BaseException, *modules: str) -> bool:
    return type(error).__module__.split(".")[0] in modules


def _lost_psycopg2(error: BaseException, code: object) -> bool:
    """psycopg2 raises its base classes with no SQLSTATE when the server cannot be reached or closed
    the connection (an error the server sent is of a psycopg2.errors class, by its SQLSTATE)."""
    kind = type(error)  # by name: the extractor package does not depend on psycopg2
    return code is None and kind.__module__ == "psycopg2" and kind.__name__ in ("OperationalError", "InterfaceError")


def connect(source: SourceConfig) -> Engine:
    """An engine whose first connection is tried now, so an unreachable source fails early and clearly.
    The password (environment or Secret Manager, shared/credentials.py) is added to the URL here only."""
    connect_args: dict[str, object] = {}
    if source.url.startswith("mssql+pymssql"):
        connect_args = {"login_timeout": source.connect_timeout_s, "timeout": 0}
    elif source.url.startswith("postgresql"):
        connect_args = {"connect_timeout": source.connect_timeout_s}
    elif source.url.startswith(("mysql", "mariadb")):  # TIMESTAMPs read as UTC (read_types.MysqlUtcTimestamp)
        connect_args = {"connect_timeout": source.connect_timeout_s, "init_command": "SET time_zone = '+00:00'"}
    register_url(source.url)  # the query's password= too, before any message can quote it
    shown = redact(source.url)
    try:
        url = _session_settings(sa.engine.make_url(source_url(source)))
    except SecretAccessError as error:
        raise SourceError(f"cannot read the password of source {shown}: {redact(str(error))}") from None
    if url.host and "@" in url.host:
        raise SourceError(f"cannot connect to source {shown}: the password holds an '@' that is not "
                          "percent-encoded; write it as %40")
    missing = _missing_sqlite_file(url)
    if missing:
        raise SourceError(f"cannot connect to source {shown}: database file {missing} does not exist")
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _tolerate_invalid_utf8)
            sqlite_types.declare_type_names(engine.dialect)
        with engine.connect():
            pass
    except Exception as error:  # drivers raise their own types; all mean "cannot reach the source"
        raise SourceError(f"cannot connect to source {shown}: {error_line(error)}") from None
    engines.preload(engine.dialect.name)
    return engine


def _missing_sqlite_file(url: sa.engine.URL) -> str | None:
    """SQLite creates an empty database where the file is missing: a mistyped path would read as
    every table gone from the source, and leave an empty file behind."""
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None
    return None if Path(path).exists() else path


# Values read as PostgreSQL's text (intervals, ranges, arrays of dates) follow these settings, and
# psycopg2 parses dates in ISO only: a server or role set to another zone or style changes nothing.
# Key bounds written into the Arrow reader's SQL as literals need backslashes read as themselves.
_POSTGRESQL_SESSION = ("-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres "
                       "-c standard_conforming_strings=on")


def _session_settings(url: sa.engine.URL) -> sa.engine.URL:
    """The URL with the session settings the extractor reads in (both PostgreSQL readers connect by it)."""
    if url.get_backend_name() != "postgresql":
        return url
    given = url.query.get("options") or ()
    options = " ".join([*((given,) if isinstance(given, str) else given), _POSTGRESQL_SESSION])
    return url.update_query_dict({"options": options})


@dataclass(frozen=True)
class SourceTable:
    """A reflected table: SQLAlchemy's view (typed result processing) and ours (the contract)."""

    config: TableConfig
    table: sa.Table
    schema: TableSchema
    dialect: str  # SQLAlchemy's name of the source (mssql, postgresql, mysql, sqlite)
    duplicated_keys: int = 0  # keys held by more than one row: left out of the stream, quarantined


def _tolerate_invalid_utf8(dbapi_connection: object, _record: object) -> None:
    """SQLite stores whatever bytes it was given as TEXT. Decoding with surrogateescape keeps a bad
    value as an unpaired surrogate, which the converters refuse, so the row is quarantined with its
    reason instead of the whole table failing to read."""
    dbapi_connection.text_factory = lambda data: data.decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]


def discover(engine: Engine, table: TableConfig) -> SourceTable:
    """The table's columns in ordinal order with their BigQuery types; the key from the config, else
    the primary key, else none: the table is keyless (see `shared.schema.TableSchema`)."""
    if engine.dialect.name == "mssql":
        return _discover_mssql(engine, table)
    reflected = _reflect(engine, table)
    key = [c.name for c in reflected.primary_key.columns]
    if table.key:
        try:
            key = matched_all(table.key, [c.name for c in reflected.columns], "key column")
        except SourceNameError as error:
            raise SourceError(f"table {table.name!r}: {error}") from None
    if not key:
        _log_keyless(table.name)
    type_names = {c.name: _type_name(c.type, engine) for c in reflected.columns}  # a domain by its own name
    if engine.dialect.name == "postgresql":
        pg_domains.unwrap(engine, reflected)
    try:
        columns = [_column(source_column, type_names[source_column.name], key, engine)
                   for source_column in reflected.columns]
    except (TypeMappingError, IdentifierError) as error:
        raise SourceError(f"table {table.name!r}, {error}") from None
    try:
        schema = TableSchema(columns=columns, key=key, keyless=not key)
    except pydantic.ValidationError as error:
        raise SourceError(f"table {table.name!r}: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    return SourceTable(table, reflected, schema, engine.dialect.name)


def _reflect(engine: Engine, table: TableConfig) -> sa.Table:
    """The table as the source spells it (see shared.source_names); one the catalog does not list
    (a kind of relation SQLAlchemy does not enumerate) by its configured spelling."""
    inspector = sa.inspect(engine)
    try:
        schema_name = table.schema_name
        if schema_name is not None:
            schemas = inspector.get_schema_names()
            schema_name = matched(schema_name, schemas, "schema")
            if schema_name is None:
                raise SourceError(f"table {table.name!r}: schema {table.schema_name!r} not found in the source"
                                  f"{nearest([table.schema_name], schemas, 'schemas')}")
        names = [*inspector.get_table_names(schema_name), *inspector.get_view_names(schema_name)]
        if engine.dialect.name == "postgresql":
            names += inspector.get_materialized_view_names(schema_name)
        spelt = matched(table.table_name, names, "table") or table.table_name
    except SourceNameError as error:
        raise SourceError(f"table {table.name!r}: {error}") from None
    try:
        return sa.Table(spelt, sa.MetaData(), schema=schema_name, autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise SourceError(f"table {table.name!r} not found in the source"
                          f"{nearest([table.table_name], names, 'tables')}") from None


def _column(source_column: sa.Column, source_type: str, key: list[str], engine: Engine) -> Column:
    try:
        identifiers.source_part(source_column.name)
        source_column.type = read_as(source_column.type, engine.dialect.name)
        bq_type = bigquery_type_for_sqlalchemy(source_column.type)
    except TypeMappingError:
        raise TypeMappingError(f"column {source_column.name!r}: no BigQuery type for {engine.dialect.name} type "
                               f"{source_type}") from None
    precision, scale, length = type_parameters(source_column.type)
    return Column(
        name=source_column.name,
        bq_name=identifiers.bigquery_column_for(source_column.name),
        source_type=source_type,
        bq_type=bq_type,
        nullable=bool(source_column.nullable) and source_column.name not in key,
        precision=precision, scale=scale, length=length,
    )


def _log_keyless(name: str) -> None:
    log.info("table %r has neither a primary key nor a configured key: replicated as keyless "
             "(rows matched by row hash and number of copies, full snapshots only)", name)


KeyBound = tuple | None


def _mssql_select(source: SourceTable, lower: KeyBound = None, upper: KeyBound = None) -> MssqlSelect:
    return select_statement(source.table.schema, source.table.name, source.schema.columns, source.schema.key,
                            lower, upper)


def _nullable_key(source: SourceTable) -> list[sa.Column]:
    """The key columns the source lets hold NULL (a configured key, SQLite's composite primary key)."""
    return [source.table.columns[k] for k in source.schema.key if source.table.columns[k].nullable]


def _whole_key(source: SourceTable, table: sa.FromClause | None = None) -> list[sa.ColumnElement]:
    """A row with a NULL key column is in no key range (NULL compares with nothing), so the key
    ordered stream leaves it out explicitly, in every reader alike; `rows_without_key` has them."""
    columns = (source.table if table is None else table).columns
    return [columns[column.name].is_not(None) for column in _nullable_key(source)]


def _ordered_key(source: SourceTable, table: sa.FromClause | None = None) -> list[sa.ColumnElement]:
    columns = (source.table if table is None else table).columns
    return [_binary_order(columns[k], source.dialect) for k in source.schema.key]


def _duplicated_keys(source: SourceTable) -> sa.Select:
    """The keys more than one row holds, compared as the stream orders them (text byte-wise, as
    BigQuery's MERGE matches them), over an alias so it never correlates with the outer select."""
    other = source.table.alias("matrix_sync_keys")
    key = _ordered_key(source, other)
    return sa.select(*key).where(*_whole_key(source, other)).group_by(*key).having(sa.func.count() > 1)


def _unique_key(source: SourceTable) -> list[sa.ColumnElement]:
    """A key held by several rows matches no single row: the stream leaves them all out, in every
    reader alike, and `rows_with_duplicated_key` has them."""
    if not source.duplicated_keys:
        return []
    return [sa.tuple_(*_ordered_key(source)).not_in(_duplicated_keys(source))]


def _generic_select(source: SourceTable, lower: KeyBound = None, upper: KeyBound = None) -> sa.Select:
    order = _ordered_key(source)
    query = sa.select(*source.table.columns).where(*_whole_key(source), *_unique_key(source)).order_by(*order)
    if lower is not None:
        query = query.where(sa.tuple_(*order) > sa.tuple_(*lower))
    if upper is not None:
        query = query.where(sa.tuple_(*order) <= sa.tuple_(*upper))
    return query


def _check_reader_choice() -> None:
    choice = os.environ.get(READER_ENV, "").strip().lower()
    if choice not in READER_CHOICES:
        raise SourceError(f"{READER_ENV}={choice!r} is not a reader: use arrow (the default where one applies) or "
                          "dbapi, or leave it unset")


def stream_rows(engine: Engine, source: SourceTable, chunk_rows: int, lower: KeyBound = None,
                upper: KeyBound = None, *, chunk_bytes: int | None = None) -> Iterator[Sequence[tuple]]:
    """Rows ordered by key (lower < key <= upper when bounds are given), at most chunk_rows of them
    in memory at a time (server-side cursor), fewer once they hold about chunk_bytes. SQLite and PostgreSQL (psycopg2) tables are read as
    Arrow columns where ADBC maps their types exactly (`ArrowChunk`s, shared.extractor.arrow_stream);
    the rest of them and MySQL/MariaDB (pymysql) from the DBAPI cursor, without a SQLAlchemy Row per
    row, as `SourceChunk`s; other drivers (pymssql) through SQLAlchemy."""
    _check_reader_choice()
    if engine.dialect.name == "mssql":
        query: sa.Executable = _mssql_select(source, lower, upper).clause()
    else:
        query = _generic_select(source, lower, upper)
    with engine.connect() as connection:
        if isinstance(query, sa.Select) and reads_from_cursor(engine.dialect):
            def select(low: KeyBound, high: KeyBound) -> sa.Select:
                return _generic_select(source, low, high)

            reader = arrow_reader(connection, source.table, source.schema)
            if reader is None:
                # SQLite measures its widest row cheaply: narrow rows are then fetched 256 at a time
                widest = (sqlite_widest_row(connection, source.table, source.schema)
                          if engine.dialect.name == "sqlite" and chunk_bytes is not None else None)
                yield from stream_dbapi(connection, source.schema, select, chunk_rows, lower, upper,
                                        chunk_bytes=chunk_bytes, widest_row=widest)
            else:
                yield from stream_arrow(reader, connection, engine, source.schema, select, chunk_rows, lower, upper,
                                        chunk_bytes=chunk_bytes)
            return
        # pymssql reads the rows SQL Server streams as they are fetched: a few rows a fetch where
        # long values may come (`chunk_size.fetch_rows`), so a run of documents passes the budget by those
        most = fetch_rows(source.schema, fetches_round_trip(engine.dialect))
        buffered = chunk_rows if chunk_bytes is None else min(chunk_rows, most)
        result = connection.execution_options(stream_results=True, yield_per=buffered).execute(query)

        def fetch(rows: int) -> list[tuple]:
            return [tuple(row) for row in result.fetchmany(rows)]
        size = row_bytes(len(source.schema.columns), long_value_positions(source.schema))
        yield from gathered(fetch, chunk_rows, chunk_bytes, size, most)


def rows_without_key(engine: Engine, source: SourceTable, chunk_rows: int) -> Iterator[list[tuple]]:
    """The rows with a NULL in a key column, as the driver returns them, a chunk at a time: no MERGE
    can match them, so the snapshot quarantines them. Not asked of SQL Server, whose T-SQL select
    does not leave them out (a NULL key sorts first there, into the first chunk's row checks)."""
    nullable = _nullable_key(source)
    if not nullable or engine.dialect.name == "mssql":
        return
    query = sa.select(*source.table.columns).where(sa.or_(*(column.is_(None) for column in nullable)))
    with engine.connect() as connection:
        yield from raw_rows(connection, query, chunk_rows)


def rows_with_duplicated_key(engine: Engine, source: SourceTable, chunk_rows: int) -> Iterator[list[tuple]]:
    """The rows whose key other rows hold too, in key order, as the driver returns them, a chunk at
    a time: no MERGE can match them, so the snapshot quarantines them (see `find_duplicated_keys`)."""
    if not source.duplicated_keys:
        return
    query = (sa.select(*source.table.columns).where(sa.tuple_(*_ordered_key(source)).in_(_duplicated_keys(source)))
             .order_by(*_ordered_key(source)))
    with engine.connect() as connection:
        yield from raw_rows(connection, query, chunk_rows)


MAX_DUPLICATED_KEYS = 1000


def find_duplicated_keys(engine: Engine, source: SourceTable) -> SourceTable:
    """The table with the number of keys more than one row holds, counted only where nothing in the
    source makes the key unique (a configured key that is no primary key or unique index). A few
    are bad rows to quarantine; more than MAX_DUPLICATED_KEYS mean the configured key is not a key.
    SQL Server is not asked: its T-SQL select does not leave them out."""
    if engine.dialect.name == "mssql" or source.schema.keyless or _declared_unique(engine, source):
        return source
    with engine.connect() as connection:
        counted = connection.execute(
            sa.select(sa.func.count()).select_from(_duplicated_keys(source).subquery())).scalar_one()
    if counted > MAX_DUPLICATED_KEYS:
        raise SourceError(f"table {source.config.name!r}: key {source.schema.key} is not unique in the source, "
                          f"{counted:,} key values are held by more than one row; configure a key that is unique")
    if counted:
        log.warning("table %r: %d key value(s) of %s held by more than one row; their rows are quarantined",
                    source.config.name, counted, source.schema.key)
    return replace(source, duplicated_keys=counted)


def _declared_unique(engine: Engine, source: SourceTable) -> bool:
    """The primary key, or a unique constraint or index over whole rows (not a partial one), lies
    within the key."""
    key = set(source.schema.key)
    primary = {column.name for column in source.table.primary_key.columns}
    if primary and primary <= key:
        return True
    inspector = sa.inspect(engine)
    where = {"table_name": source.table.name, "schema": source.table.schema}
    unique = [c["column_names"] for c in inspector.get_unique_constraints(**where)]
    unique += [i["column_names"] for i in inspector.get_indexes(**where) if i.get("unique")
               and not any(option.endswith("_where") for option in i.get("dialect_options", {}))]
    return any(columns and all(columns) and set(columns) <= key for columns in unique)


def key_boundaries(engine: Engine, source: SourceTable, ranges: int, min_rows: int = 1) -> list[tuple]:
    """Keys splitting the table into `ranges` contiguous ranges of about equal row counts, in the
    same order and collation the rows are streamed in (so the ranges neither overlap nor miss);
    fewer ranges where they would hold under `min_rows` rows each (a worker process costs seconds)."""
    if ranges <= 1 or not source.schema.key:
        return []
    with engine.connect() as connection:
        table = source.table
        total = connection.execute(_row_count(engine, source)).scalar_one()
        ranges = min(ranges, max(1, total // max(min_rows, 1)))
        bounds: list[tuple] = []
        for k in range(1, ranges):
            offset = k * total // ranges - 1
            if offset < 0:
                continue
            if engine.dialect.name == "mssql":
                statement = _mssql_select(source)
                text = sa.text(f"{statement.escaped_sql or statement.sql} OFFSET {int(offset)} ROWS FETCH NEXT 1 ROWS ONLY")
                row = connection.execute(text).first()
                bound = tuple(row[p] for p in source.schema.key_positions) if row else None
            else:
                row = connection.execute(sa.select(*(table.columns[k] for k in source.schema.key))
                                         .where(*_whole_key(source)).order_by(*_ordered_key(source))
                                         .offset(offset).limit(1)).first()
                bound = tuple(row) if row else None
            if bound is not None and (not bounds or bound != bounds[-1]):
                bounds.append(bound)
        return bounds


def _row_count(engine: Engine, source: SourceTable) -> sa.Executable:
    """Every row of the table, named as its SELECT names it."""
    if engine.dialect.name == "mssql":
        return count_statement(source.table.schema, source.table.name).clause()
    return sa.select(sa.func.count()).select_from(source.table)


def _discover_mssql(engine: Engine, table: TableConfig) -> SourceTable:
    """SQL Server's own catalog instead of reflection (exact types; computed and rowversion columns
    left out, see shared.mssql.catalog). The sa.Table only names the columns: rows are read with the
    T-SQL of shared.mssql.select, which projects CLR and offset types into values the converters take."""
    schema_name = table.schema_name or DEFAULT_SCHEMA
    try:
        with engine.connect() as connection:
            schema = discover_mssql(connection, schema_name, table.table_name, table.key)
    except MssqlCatalogError as error:
        raise SourceError(f"table {table.name!r}: {error}") from None
    columns = [sa.Column(c.name, sa.types.NullType(), primary_key=c.name in schema.key) for c in schema.columns]
    return SourceTable(table, sa.Table(table.table_name, sa.MetaData(), *columns, schema=schema_name), schema,
                       engine.dialect.name)


def _binary_order(column: sa.Column, dialect: str) -> sa.ColumnElement:
    """Text keys sorted by code point, the order Python compares strings in (see extractor.delta)."""
    if not isinstance(column.type, sa.String):
        return column
    if dialect == "postgresql":  # a type read as its text, an enum (ordered by declaration) or citext
        # (which ignores case whatever the collation) by its text
        as_text = isinstance(column.type, (PgText, sa.Enum, sa.dialects.postgresql.CITEXT))
        return (sa.cast(column, sa.Text()) if as_text else column).collate("C")
    if dialect in ("mysql", "mariadb"):
        return _utf8_bytes(column)
    if dialect == "sqlite":  # a column declared COLLATE NOCASE would sort 'a' before 'B'
        return column.collate("BINARY")
    return column


def _utf8_bytes(column: sa.Column) -> sa.ColumnElement:
    """The text's UTF-8 bytes, whatever the column's character set: the order of code points, and
    the bytes pymysql sends a bound str as (a latin1 column's own bytes sort '€' (0x80) first and
    compare with bounds in another encoding, so key ranges overlapped)."""
    utf8 = sa.func.convert(column.op("USING")(sa.literal_column("utf8mb4")))
    return sa.cast(utf8, sa.dialects.mysql.BINARY())


def _type_name(sa_type: sa.types.TypeEngine, engine: Engine) -> str:
    try:
        return sa_type.compile(dialect=engine.dialect).lower()
    except Exception:  # a reflected type the dialect cannot print back still has a class name
        return type(sa_type).__name__.lower()
