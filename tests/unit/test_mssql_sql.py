"""SQL Server catalog mapping and T-SQL generation (`shared.mssql`), without a SQL Server.

The catalog's answer is data, so mapping is tested with catalog rows written out by hand; every
T-SQL text is parsed with sqlglot's T-SQL grammar; the key-range predicate is also run, transpiled,
against SQLite to prove it selects exactly ``lower < key <= upper``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import random
import re
import sqlite3
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlglot import exp

from shared.config import TableConfig
from shared.extractor import source as source_module
from shared.identifiers import IdentifierError
from shared.mssql.catalog import COLUMNS_SQL, MssqlCatalogError, discover_mssql, schema_from_catalog
from shared.mssql.quoting import quote_mssql
from shared.mssql.select import BINARY_COLLATION, count_statement, projection, select_statement
from shared.schema import Column
from shared.types import arrow_value_converter

PYMSSQL = sa.create_engine("mssql+pymssql://user:secret@nowhere/Matrix").dialect  # never connects


def parse_tsql(sql: str) -> list[exp.Expression]:
    statements = sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)
    return [s for s in statements if s is not None]


def catalog_row(name: str, ordinal: int, data_type: str, max_length: int | None = None,
                precision: int | None = None, scale: int | None = None, datetime_precision: int | None = None,
                nullable: bool = True, **flags: object) -> dict[str, object]:
    """One row as COLUMNS_SQL returns it (INFORMATION_SCHEMA's values for the type)."""
    return {"name": name, "ordinal": ordinal, "data_type": data_type, "declared_type": data_type,
            "max_length": max_length, "numeric_precision": precision, "numeric_scale": scale,
            "datetime_precision": datetime_precision, "nullable": nullable, "is_identity": False,
            "is_computed": False, "is_rowversion": False, "collation": None, "primary_key_ordinal": None, **flags}


# (catalog row arguments, expected source_type, bq_type, precision, scale, length)
TYPE_CASES: list[tuple[dict[str, object], str, str, int | None, int | None, int | None]] = [
    ({"data_type": "bit"}, "bit", "BOOL", None, None, None),
    ({"data_type": "tinyint", "precision": 3, "scale": 0}, "tinyint", "INT64", None, None, None),
    ({"data_type": "smallint", "precision": 5, "scale": 0}, "smallint", "INT64", None, None, None),
    ({"data_type": "int", "precision": 10, "scale": 0}, "int", "INT64", None, None, None),
    ({"data_type": "bigint", "precision": 19, "scale": 0}, "bigint", "INT64", None, None, None),
    ({"data_type": "decimal", "precision": 12, "scale": 2}, "decimal(12,2)", "NUMERIC", 12, 2, None),
    ({"data_type": "numeric", "precision": 38, "scale": 0}, "numeric(38,0)", "BIGNUMERIC", 38, 0, None),
    ({"data_type": "decimal", "precision": 38, "scale": 9}, "decimal(38,9)", "NUMERIC", 38, 9, None),
    ({"data_type": "decimal", "precision": 38, "scale": 10}, "decimal(38,10)", "BIGNUMERIC", 38, 10, None),
    ({"data_type": "money", "precision": 19, "scale": 4}, "money", "NUMERIC", 19, 4, None),
    ({"data_type": "smallmoney", "precision": 10, "scale": 4}, "smallmoney", "NUMERIC", 10, 4, None),
    ({"data_type": "float", "precision": 53}, "float", "FLOAT64", None, None, None),
    ({"data_type": "real", "precision": 24}, "real", "FLOAT64", None, None, None),
    ({"data_type": "date", "datetime_precision": 0}, "date", "DATE", None, None, None),
    ({"data_type": "time", "datetime_precision": 7}, "time(7)", "TIME", 7, None, None),
    ({"data_type": "datetime", "datetime_precision": 3}, "datetime", "DATETIME", None, None, None),
    ({"data_type": "datetime2", "datetime_precision": 7}, "datetime2(7)", "DATETIME", 7, None, None),
    ({"data_type": "smalldatetime", "datetime_precision": 0}, "smalldatetime", "DATETIME", None, None, None),
    ({"data_type": "datetimeoffset", "datetime_precision": 7}, "datetimeoffset(7)", "TIMESTAMP", 7, None, None),
    ({"data_type": "char", "max_length": 10}, "char(10)", "STRING", None, None, 10),
    ({"data_type": "varchar", "max_length": 320}, "varchar(320)", "STRING", None, None, 320),
    ({"data_type": "varchar", "max_length": -1}, "varchar(max)", "STRING", None, None, None),
    ({"data_type": "nchar", "max_length": 5}, "nchar(5)", "STRING", None, None, 5),
    ({"data_type": "nvarchar", "max_length": 200}, "nvarchar(200)", "STRING", None, None, 200),
    ({"data_type": "nvarchar", "max_length": -1}, "nvarchar(max)", "STRING", None, None, None),
    ({"data_type": "text", "max_length": 2147483647}, "text", "STRING", None, None, None),
    ({"data_type": "ntext", "max_length": 1073741823}, "ntext", "STRING", None, None, None),
    ({"data_type": "binary", "max_length": 16}, "binary(16)", "BYTES", None, None, 16),
    ({"data_type": "varbinary", "max_length": -1}, "varbinary(max)", "BYTES", None, None, None),
    ({"data_type": "image", "max_length": 2147483647}, "image", "BYTES", None, None, None),
    ({"data_type": "uniqueidentifier"}, "uniqueidentifier", "STRING", None, None, None),
    ({"data_type": "xml", "max_length": -1}, "xml", "STRING", None, None, None),
    ({"data_type": "sql_variant", "max_length": 0}, "sql_variant", "STRING", None, None, None),
    ({"data_type": "hierarchyid", "max_length": 892}, "hierarchyid", "STRING", None, None, None),
    ({"data_type": "geography", "max_length": -1}, "geography", "GEOGRAPHY", None, None, None),
    ({"data_type": "geometry", "max_length": -1}, "geometry", "STRING", None, None, None),
]
KEY_ROW = catalog_row("id", 1, "int", precision=10, scale=0, nullable=False, primary_key_ordinal=1)


def every_type_rows() -> list[dict[str, object]]:
    rows = [KEY_ROW]
    for i, (args, *_) in enumerate(TYPE_CASES, start=2):
        rows.append(catalog_row(f"c_{args['data_type']}_{i}", i, **args))  # type: ignore[arg-type]
    rows.append(catalog_row("version", len(rows) + 1, "timestamp", max_length=8, nullable=False, is_rowversion=True))
    return rows


# --- catalog mapping ----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "source_type", "bq_type", "precision", "scale", "length"), TYPE_CASES,
                         ids=[c[1] for c in TYPE_CASES])
def test_every_sql_server_type_maps_to_its_column(args: dict[str, object], source_type: str, bq_type: str,
                                                  precision: int | None, scale: int | None, length: int | None) -> None:
    schema = schema_from_catalog([KEY_ROW, catalog_row("Col", 2, **args)], "dbo", "T", ["id"])  # type: ignore[arg-type]
    column = schema.column("Col")
    assert column == Column(name="Col", bq_name="Col", source_type=source_type, bq_type=bq_type, nullable=True,
                            precision=precision, scale=scale, length=length)


def test_columns_keep_ordinal_order_and_keys_are_not_nullable() -> None:
    rows = every_type_rows()
    shuffled = rows[:]
    random.Random(5).shuffle(shuffled)
    schema = schema_from_catalog(shuffled, "dbo", "Everything", ["id"])
    expected = [r["name"] for r in rows if r["data_type"] != "timestamp"]
    assert [c.name for c in schema.columns] == expected
    assert schema.column("id").nullable is False
    nullable_key = schema_from_catalog([catalog_row("k", 1, "int"), catalog_row("v", 2, "int")], "dbo", "T", ["k"])
    assert nullable_key.column("k").nullable is False  # a key column is NOT NULL in the contract


def test_rowversion_and_computed_columns_are_left_out_but_a_computed_key_is_kept() -> None:
    rows = [
        catalog_row("id", 1, "int", nullable=False),
        catalog_row("RowVer", 2, "timestamp", max_length=8, nullable=False, is_rowversion=True),
        catalog_row("Total", 3, "decimal", precision=14, scale=2, is_computed=True),
        catalog_row("Code", 4, "varchar", max_length=12, is_computed=True, nullable=False),
        catalog_row("Name", 5, "nvarchar", max_length=50),
    ]
    assert [c.name for c in schema_from_catalog(rows, "dbo", "T", ["id"]).columns] == ["id", "Name"]
    assert [c.name for c in schema_from_catalog(rows, "dbo", "T", ["Code"]).columns] == ["id", "Code", "Name"]
    with pytest.raises(MssqlCatalogError, match="rowversion"):
        schema_from_catalog(rows, "dbo", "T", ["RowVer"])


def test_missing_table_and_missing_key_are_clear_errors() -> None:
    with pytest.raises(MssqlCatalogError, match=r"table dbo\.Nope not found"):
        schema_from_catalog([], "dbo", "Nope", ["id"])
    rows = [catalog_row("CustomerID", 1, "int", nullable=False), catalog_row("Name", 2, "nvarchar", max_length=9)]
    with pytest.raises(MssqlCatalogError, match=r"no key column\(s\) \['CustomerIDs'\]; did you mean 'CustomerIDs' -> "
                                                 r"'CustomerID'"):
        schema_from_catalog(rows, "dbo", "Customers", ["CustomerIDs"])
    with pytest.raises(MssqlCatalogError, match=r"columns are \['CustomerID', 'Name'\]"):
        schema_from_catalog(rows, "dbo", "Customers", ["zzz"])


def test_a_key_written_in_another_case_is_the_catalogs_column() -> None:
    """As a case-insensitive collation (SQL Server's default) reads it; a case-sensitive one holding
    the name in two cases is not guessed."""
    rows = [catalog_row("CustomerID", 1, "int", nullable=False), catalog_row("Name", 2, "nvarchar", max_length=9)]
    schema = schema_from_catalog(rows, "dbo", "Customers", ["customerid"])
    assert schema.key == ["CustomerID"] and not schema.columns[0].nullable
    rows.append(catalog_row("CUSTOMERID", 3, "int"))
    with pytest.raises(MssqlCatalogError, match=r"key column 'customerid' matches \['CustomerID', 'CUSTOMERID'\]"):
        schema_from_catalog(rows, "dbo", "Customers", ["customerid"])


def test_unmappable_types_and_colliding_names_are_catalog_errors() -> None:
    with pytest.raises(MssqlCatalogError, match=r"'Shape' \(MyClrType\)"):
        schema_from_catalog([KEY_ROW, catalog_row("Shape", 2, "MyClrType", declared_type="MyClrType")], "dbo", "T",
                            ["id"])
    with pytest.raises(MssqlCatalogError, match="columns .Name., .NAME. would be one BigQuery column"):
        # A case-sensitive collation allows both; BigQuery column names are case-insensitive.
        schema_from_catalog([KEY_ROW, catalog_row("Name", 2, "int"), catalog_row("NAME", 3, "int")], "dbo", "T", ["id"])
    with pytest.raises(MssqlCatalogError, match="control character"):
        schema_from_catalog([KEY_ROW, catalog_row("bad\nname", 2, "int")], "dbo", "T", ["id"])


def test_discover_mssql_binds_schema_and_table_as_parameters() -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    class FakeConnection:
        def execute(self, clause: sa.TextClause, params: dict[str, object]) -> SimpleNamespace:
            calls.append((clause.text, params))
            rows = [KEY_ROW, catalog_row("Name", 2, "nvarchar", max_length=40)]
            return SimpleNamespace(mappings=lambda: SimpleNamespace(all=lambda: rows))

    schema = discover_mssql(FakeConnection(), "sales", "O'Brien]; DROP", ["id"])  # type: ignore[arg-type]
    assert [c.name for c in schema.columns] == ["id", "Name"]
    (text, params), = calls
    assert text == COLUMNS_SQL and params == {"schema": "sales", "table": "O'Brien]; DROP"}
    assert "O'Brien" not in text


# --- every T-SQL text parses ----------------------------------------------------------------------

def test_catalog_query_parses_as_one_tsql_statement_with_bind_parameters() -> None:
    (statement,) = parse_tsql(COLUMNS_SQL)
    assert isinstance(statement, exp.Select)
    placeholders = {p.name for p in statement.find_all(exp.Placeholder)}
    assert placeholders == {"schema", "table"}
    tables = {t.name.lower() for t in statement.find_all(exp.Table)}
    assert {"columns", "schemas", "objects", "types", "computed_columns", "identity_columns", "indexes",
            "index_columns"} <= tables
    compiled = sa.text(COLUMNS_SQL).compile(dialect=PYMSSQL).string
    assert "%(schema)s" in compiled and "%(table)s" in compiled


def test_select_of_every_type_parses_and_projects_clr_and_offset_types() -> None:
    schema = schema_from_catalog(every_type_rows(), "dbo", "Everything", ["id"])
    statement = select_statement("dbo", "Everything", schema.columns, schema.key)
    (parsed,) = parse_tsql(statement.sql)
    assert isinstance(parsed, exp.Select) and len(parsed.expressions) == len(schema.columns)
    by_type = {c.source_type: projection(c) for c in schema.columns}
    assert by_type["hierarchyid"].endswith(".ToString() AS [c_hierarchyid_35]")
    assert ".STAsText()" in by_type["geography"] and ".AsTextZM()" in by_type["geometry"]
    assert by_type["xml"].startswith("CONVERT(nvarchar(max), ")
    assert "DATENAME(TZOFFSET, [src].[c_datetimeoffset_20])" in by_type["datetimeoffset(7)"]
    assert "SQL_VARIANT_PROPERTY([src].[c_sql_variant_34], 'BaseType')" in by_type["sql_variant"]
    assert by_type["uniqueidentifier"] == "[src].[c_uniqueidentifier_32]"
    assert by_type["money"] == "[src].[c_money_11]" and by_type["datetime2(7)"] == "[src].[c_datetime2_18]"
    assert statement.sql.rstrip().endswith("ORDER BY [src].[id]")
    assert statement.params == {}


def test_datetimeoffset_text_form_is_what_the_timestamp_converter_parses() -> None:
    """The SELECT turns datetimeoffset into 'yyyy-mm-dd hh:mi:ss.fffffff+hh:mm': the instant survives,
    for the Arrow converter and for the row models' pydantic datetime alike."""
    convert = arrow_value_converter("TIMESTAMP")
    assert convert("2024-01-02 03:04:05.1234567+05:30") == dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=dt.UTC)
    assert convert("2024-01-02 03:04:05.9999999-08:00") == dt.datetime(2024, 1, 2, 11, 4, 5, 999999, tzinfo=dt.UTC)
    assert convert("0001-01-01 00:00:00.0000000+00:00") == dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    parsed = TypeAdapter(dt.datetime).validate_python("2024-01-02 03:04:05.1234567+05:30")
    assert parsed.astimezone(dt.UTC) == dt.datetime(2024, 1, 1, 21, 34, 5, 123456, tzinfo=dt.UTC)
    schema = schema_from_catalog([KEY_ROW, catalog_row("At", 2, "datetimeoffset", datetime_precision=7)], "dbo", "T",
                                 ["id"])
    text = projection(schema.column("At"))
    assert "121) + DATENAME(TZOFFSET, [src].[At]) END AS [At]" in text  # no space before the offset
    assert arrow_value_converter("DATETIME")("9999-12-31 23:59:59.9999999") == dt.datetime(9999, 12, 31, 23, 59, 59,
                                                                                          999999)


def test_text_keys_sort_in_binary_collation_and_guid_bounds_match_their_text() -> None:
    columns = [Column(name="Code", bq_name="Code", source_type="varchar(12)", bq_type="STRING", nullable=False,
                      length=12),
               Column(name="Guid", bq_name="Guid", source_type="uniqueidentifier", bq_type="STRING", nullable=False),
               Column(name="Name", bq_name="Name", source_type="nvarchar(40)", bq_type="STRING", length=40)]
    guid = uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff")
    statement = select_statement("dbo", "T", columns, ["Code", "Guid"], lower=("a", guid))
    parse_tsql(statement.sql)
    assert (f"ORDER BY CAST([src].[Code] AS nvarchar(12)) COLLATE {BINARY_COLLATION}, "
            f"CAST([src].[Guid] AS nchar(36)) COLLATE {BINARY_COLLATION}") in statement.sql
    assert statement.params == {"lo_0": "a", "lo_1": "6F9619FF-8B86-D011-B42D-00C04FC964FF"}
    nvarchar_key = select_statement(None, "T", columns, ["Name"])
    assert nvarchar_key.sql.endswith(f"ORDER BY [src].[Name] COLLATE {BINARY_COLLATION}")
    assert "FROM [T] AS [src]" in nvarchar_key.sql


def _parsed_projection(column: Column) -> exp.Expression:
    (parsed,) = parse_tsql(f"SELECT {projection(column)} FROM [T] AS [src]")
    return parsed.expressions[0]


def test_geometry_keeps_z_m_and_srid_and_geography_is_the_2d_wkt_bigquery_takes() -> None:
    """STAsText() drops Z, M and the SRID: a geometry changed in only those would not change."""
    geometry = _parsed_projection(Column(name="Shape", bq_name="Shape", source_type="geometry", bq_type="STRING"))
    text = geometry.sql("tsql")
    assert "STASTEXT" not in text.upper()
    assert "[src].[Shape].AsTextZM()" in text and "CAST([src].[Shape].STSrid AS NVARCHAR(11))" in text
    assert text.startswith("CASE WHEN [src].[Shape] IS NULL THEN NULL ELSE N'SRID=' + ")  # EWKT, NULL kept
    assert geometry.alias == "Shape"
    geography = projection(Column(name="Where", bq_name="Where", source_type="geography", bq_type="GEOGRAPHY"))
    assert geography == "[src].[Where].STAsText() AS [Where]"


def test_sql_variant_text_is_neither_truncated_nor_rounded() -> None:
    """A varchar variant holds 8,000 characters and a binary one 16,002 hex characters: nvarchar(4000)
    cut both. Floats take style 3 (17 digits, every distinct float a distinct text), not 2 (16)."""
    variant = _parsed_projection(Column(name="V", bq_name="V", source_type="sql_variant", bq_type="STRING"))
    converts = {c.sql("tsql") for c in variant.find_all(exp.Convert) if c.args["this"].sql("tsql") != "VARCHAR(27)"}
    assert all(c.startswith(("CONVERT(NVARCHAR(MAX), ", "CONVERT(VARCHAR(MAX), ")) for c in converts), converts
    assert "CONVERT(NVARCHAR(MAX), [src].[V])" in converts  # varchar, nvarchar and every other base type
    assert "CONVERT(VARCHAR(MAX), CAST([src].[V] AS VARBINARY(8000)), 1)" in converts
    assert "CONVERT(NVARCHAR(MAX), CAST([src].[V] AS FLOAT), 3)" in converts
    assert "4000" not in variant.sql("tsql")


# --- hostile identifiers --------------------------------------------------------------------------

HOSTILE = ["a]b", "]]", "[x]", "x; DROP TABLE t; --", "it's \"quoted\"", "with space", "ünïcødé 名前 😀",
           "a:b", ":lo_0", "--comment", "/*c*/", "50%", "N'x'"]


def identifier_names(statement: exp.Expression) -> set[str]:
    return {i.this for i in statement.find_all(exp.Identifier)}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_identifiers_are_quoted_and_stay_one_statement(name: str) -> None:
    columns = [Column(name=name, bq_name="k", source_type="int", bq_type="INT64", nullable=False),
               Column(name=name + "2", bq_name="v", source_type="hierarchyid", bq_type="STRING")]
    statement = select_statement(name, name, columns, [name], lower=(1,), upper=(9,))
    (parsed,) = parse_tsql(statement.sql)
    assert {name, name + "2"} <= identifier_names(parsed)
    assert set(statement.params) == {"lo_0", "hi_0"}
    # What SQLAlchemy hands pymssql is the same text, with only the real parameters rewritten.
    compiled = statement.clause().compile(dialect=PYMSSQL)
    assert compiled.string == re.sub(r"(?<=[<>=] ):(lo|hi)_(\d)", r"%(\1_\2)s", statement.sql)
    assert quote_mssql(name) in compiled.string
    assert sorted(compiled.params) == ["hi_0", "lo_0"]


@pytest.mark.parametrize("name", ["", "new\nline", "nul\x00", "tab\t", "x" * 129, "a%(b)s"])
def test_identifiers_that_cannot_be_quoted_safely_are_refused(name: str) -> None:
    with pytest.raises(IdentifierError):
        quote_mssql(name)


_NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda s: "%(" not in s and not any(0x7F <= ord(c) <= 0x9F for c in s))


@settings(max_examples=150, deadline=None)
@given(_NAMES)
def test_any_quotable_name_round_trips_through_sqlglot_and_sqlalchemy(name: str) -> None:
    columns = [Column(name=name, bq_name="k", source_type="bigint", bq_type="INT64", nullable=False)]
    statement = select_statement("dbo", name, columns, [name])
    (parsed,) = parse_tsql(statement.sql)
    assert name in identifier_names(parsed)
    assert statement.clause().compile(dialect=PYMSSQL).string == statement.sql


# --- key ranges -----------------------------------------------------------------------------------

def int_columns(names: list[str]) -> list[Column]:
    return [Column(name=n, bq_name=n, source_type="int", bq_type="INT64", nullable=False) for n in names]


@pytest.mark.parametrize("width", [1, 2, 3])
def test_composite_key_range_predicates_parse_with_bind_parameters(width: int) -> None:
    key = ["a", "b", "c"][:width]
    columns = int_columns([*key, "v"])
    for lower, upper in [((1,) * width, None), (None, (2,) * width), ((1,) * width, (2,) * width)]:
        statement = select_statement("dbo", "T", columns, key, lower, upper)
        (parsed,) = parse_tsql(statement.sql)
        placeholders = {p.name for p in parsed.find_all(exp.Placeholder)}
        assert placeholders == set(statement.params)
        assert len(statement.params) == width * ((lower is not None) + (upper is not None))
    two = select_statement("dbo", "T", int_columns(["a", "b"]), ["a", "b"], lower=(1, 2))
    assert "(([src].[a] > :lo_0) OR ([src].[a] = :lo_0 AND [src].[b] > :lo_1))" in two.sql


def test_key_bounds_must_match_the_key() -> None:
    columns = int_columns(["a", "b"])
    with pytest.raises(ValueError, match="2 value"):
        select_statement("dbo", "T", columns, ["a", "b"], lower=(1,))
    with pytest.raises(ValueError, match="NULL"):
        select_statement("dbo", "T", columns, ["a", "b"], upper=(1, None))
    with pytest.raises(ValueError, match="among the selected columns"):
        select_statement("dbo", "T", columns, ["zz"])


@contextlib.contextmanager
def sqlite_grid(width: int) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    names = ["a", "b", "c"][:width]
    connection.execute(f"CREATE TABLE T ({', '.join(names)}, v)")
    grid = list(itertools.product(range(3), repeat=width))
    connection.executemany(f"INSERT INTO T VALUES ({', '.join('?' * (width + 1))})", [(*k, 0) for k in grid])
    try:
        yield connection
    finally:
        connection.close()


@pytest.mark.parametrize("width", [1, 2, 3])
def test_key_ranges_select_exactly_lower_exclusive_upper_inclusive(width: int) -> None:
    """The predicate, transpiled to SQLite, against Python's tuple order on every bound pair."""
    key = ["a", "b", "c"][:width]
    columns = int_columns([*key, "v"])
    points = list(itertools.product(range(3), repeat=width))
    rng = random.Random(width)
    with sqlite_grid(width) as connection:
        for lower, upper in [(rng.choice(points + [None]), rng.choice(points + [None])) for _ in range(25)]:
            statement = select_statement(None, "T", columns, key, lower, upper)
            sql = sqlglot.transpile(statement.sql, read="tsql", write="sqlite")[0]
            got = [tuple(r[:width]) for r in connection.execute(sql, statement.params)]
            expected = [p for p in points if (lower is None or p > lower) and (upper is None or p <= upper)]
            assert got == expected, (lower, upper, sql)


def test_ranges_partition_a_table() -> None:
    key = ["a", "b"]
    columns = int_columns([*key, "v"])
    cuts = [None, (0, 2), (1, 1), (2, 0), None]
    with sqlite_grid(2) as connection:
        seen = []
        for lower, upper in itertools.pairwise(cuts):
            statement = select_statement(None, "T", columns, key, lower, upper)
            sql = sqlglot.transpile(statement.sql, read="tsql", write="sqlite")[0]
            seen += [tuple(r[:2]) for r in connection.execute(sql, statement.params)]
    assert seen == list(itertools.product(range(3), repeat=2))


# --- the extractor's SQL Server path --------------------------------------------------------------

class FakeMssqlEngine:
    """Just enough of an Engine for source.discover/stream_rows to take the SQL Server path."""

    def __init__(self, rows: list[tuple]) -> None:
        self.dialect = SimpleNamespace(name="mssql")
        self.executed: list[object] = []
        self.options: dict[str, object] = {}
        self._rows = rows

    @contextlib.contextmanager
    def connect(self) -> Iterator["FakeMssqlEngine"]:
        yield self

    def execution_options(self, **options: object) -> "FakeMssqlEngine":
        self.options.update(options)
        return self

    def execute(self, query: object, params: object = None) -> SimpleNamespace:
        self.executed.append(query)
        rows = list(self._rows)
        def fetchmany(n: int) -> list[tuple]:
            taken, rows[:] = rows[:n], rows[n:]
            return taken
        return SimpleNamespace(fetchmany=fetchmany)


def test_extractor_uses_the_catalog_and_the_tsql_select_for_mssql(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, list[str]]] = []

    def fake_discover(connection: object, schema: str, table: str, key: list[str]):  # type: ignore[no-untyped-def]
        seen.append((schema, table, key))
        return schema_from_catalog([KEY_ROW, catalog_row("Where", 2, "geography", max_length=-1)], schema, table, key)

    monkeypatch.setattr(source_module, "discover_mssql", fake_discover)
    engine = FakeMssqlEngine([(1, "POINT (1 2)"), (2, None), (3, None)])
    table = source_module.discover(engine, TableConfig(name="Customers", key=["id"]))  # type: ignore[arg-type]
    assert seen == [("dbo", "Customers", ["id"])]
    assert [c.name for c in table.table.columns] == ["id", "Where"] and table.table.schema == "dbo"
    chunks = list(source_module.stream_rows(engine, table, chunk_rows=2))  # type: ignore[arg-type]
    assert chunks == [[(1, "POINT (1 2)"), (2, None)], [(3, None)]]
    assert engine.options == {"stream_results": True, "yield_per": 2}
    (query,) = engine.executed
    assert isinstance(query, sa.TextClause)
    assert "[src].[Where].STAsText() AS [Where]" in query.text and "FROM [dbo].[Customers] AS [src]" in query.text


def test_catalog_errors_become_source_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "discover_mssql",
                        lambda *args: schema_from_catalog([], "sales", "Gone", ["id"]))
    engine = FakeMssqlEngine([])
    with pytest.raises(source_module.SourceError, match=r"table 'sales.Gone': table sales.Gone not found"):
        source_module.discover(engine, TableConfig(name="sales.Gone", key=["id"]))  # type: ignore[arg-type]


# --- date and time key bounds, as pymssql sends them ---------------------------------------------

def _as_pymssql_sends(statement: object) -> str:
    """The statement text after pymssql substitutes its parameters (what the server receives)."""
    mssql = pytest.importorskip("pymssql._mssql")
    compiled = statement.clause().compile(dialect=PYMSSQL)  # type: ignore[attr-defined]
    return mssql.substitute_params(compiled.string, compiled.params).decode()


_UTC_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
# (source type, fractional-second precision, lower bound as pymssql returns the key, what the server reads)
TEMPORAL_BOUNDS = [
    ("datetime", None, dt.datetime(2024, 1, 2, 3, 4, 5, 123000), "CONVERT(datetime, N'2024-01-02T03:04:05.123', 126)"),
    ("datetime", None, dt.datetime(2024, 1, 13, 0, 0, 0, 6667), "CONVERT(datetime, N'2024-01-13T00:00:00.006', 126)"),
    ("smalldatetime", None, dt.datetime(2024, 1, 13, 23, 59), "CONVERT(smalldatetime, N'2024-01-13T23:59:00', 126)"),
    ("datetime2", 7, dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
     "CONVERT(datetime2(7), N'2024-01-02T03:04:05.123456', 126)"),
    ("date", None, dt.date(2024, 1, 13), "CONVERT(date, N'2024-01-13', 23)"),
    ("time", 7, dt.time(3, 4, 5, 123456), "CAST(N'03:04:05.123456' AS time(7))"),
    ("datetimeoffset", 7, "2024-01-02 03:04:05.1234567+05:30",  # the key's projected text
     "CONVERT(datetimeoffset(7), N'2024-01-02T03:04:05.1234567+05:30', 127)"),
    ("datetimeoffset", 3, dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=_UTC_0530),
     "CONVERT(datetimeoffset(3), N'2024-01-02T03:04:05.123000+05:30', 127)"),
]


@pytest.mark.parametrize(("kind", "precision", "bound", "read"), TEMPORAL_BOUNDS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TEMPORAL_BOUNDS)])
def test_date_and_time_bounds_are_iso_8601_whatever_the_sessions_dateformat(
        kind: str, precision: int | None, bound: object, read: str) -> None:
    """pymssql sent '2024-01-02 03:04:05.123', which datetime and smalldatetime read under the
    login's DATEFORMAT (dmy: 2 January became 1 February, the 13th no date at all) and which cut a
    datetime2 bound to milliseconds. ISO 8601 text in an explicit style means one instant anywhere."""
    source_type = f"{kind}({precision})" if kind in ("time", "datetime2", "datetimeoffset") else kind
    columns = [Column(name="At", bq_name="At", source_type=source_type, bq_type="DATETIME", nullable=False,
                      precision=precision), *int_columns(["v"])]
    sent = _as_pymssql_sends(select_statement("dbo", "T", columns, ["At"], lower=(bound,), upper=(bound,)))
    (parsed,) = parse_tsql(sent)
    assert isinstance(parsed, exp.Select)
    assert f"([src].[At] > {read})" in sent and f"([src].[At] <= {read})" in sent
    literal = re.search(r"N'([^']*)'", read).group(1)  # type: ignore[union-attr]
    if isinstance(bound, dt.datetime) and kind in ("datetime2", "datetimeoffset"):
        assert dt.datetime.fromisoformat(literal) == bound  # every microsecond and the offset kept


def test_a_composite_key_converts_only_its_temporal_bounds() -> None:
    columns = [Column(name="Day", bq_name="Day", source_type="datetime", bq_type="DATETIME", nullable=False),
               *int_columns(["n"])]
    sent = _as_pymssql_sends(select_statement("dbo", "T", columns, ["Day", "n"], lower=(dt.datetime(2024, 3, 4), 7)))
    parse_tsql(sent)
    day = "CONVERT(datetime, N'2024-03-04T00:00:00.000', 126)"
    assert f"(([src].[Day] > {day}) OR ([src].[Day] = {day} AND [src].[n] > 7))" in sent


# --- parallel key ranges --------------------------------------------------------------------------

class CountingMssqlEngine(FakeMssqlEngine):
    """Answers key_boundaries' count and OFFSET queries from its rows."""

    def execute(self, query: object, params: object = None) -> SimpleNamespace:
        self.executed.append(query)
        text = getattr(query, "text", "")
        offset = re.search(r"OFFSET (\d+) ROWS", text)
        row = self._rows[int(offset.group(1))] if offset else None
        return SimpleNamespace(scalar_one=lambda: len(self._rows), first=lambda: row)


def test_key_boundaries_counts_the_table_the_select_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLAlchemy's count named a schema 'sales.eu' as sales.eu.[T] (database sales, schema eu)."""
    monkeypatch.setattr(source_module, "discover_mssql", lambda _c, schema, table, key: schema_from_catalog(
        [KEY_ROW, catalog_row("Name", 2, "nvarchar", max_length=40)], schema, table, key))
    engine = CountingMssqlEngine([(i, f"n{i}") for i in range(1, 9)])
    table = source_module.discover(engine, TableConfig(name="[sales.eu].[T]", key=["id"]))  # type: ignore[arg-type]
    assert source_module.key_boundaries(engine, table, 4) == [(2,), (4,), (6,)]  # type: ignore[arg-type]
    queries: list[sa.TextClause] = engine.executed  # type: ignore[assignment]
    count, *offsets = queries
    assert count.compile(dialect=PYMSSQL).string == "SELECT COUNT_BIG(*)\nFROM [sales.eu].[T]"
    tables = {(t.db, t.name) for query in queries for t in parse_tsql(query.text)[0].find_all(exp.Table)}
    assert tables == {("sales.eu", "T")}
    assert len(offsets) == 3


def test_the_count_quotes_any_name_as_the_select_does() -> None:
    for schema, table in [("sales.eu", "T"), ("a:b", "x]y"), (None, "T")]:
        statement = count_statement(schema, table)
        (parsed,) = parse_tsql(statement.sql)
        assert {(t.db, t.name) for t in parsed.find_all(exp.Table)} == {(schema or "", table)}
        assert statement.clause().compile(dialect=PYMSSQL).string == statement.sql
        assert statement.sql.split("FROM ")[1] in select_statement(schema, table, int_columns(["k"]), ["k"]).sql
