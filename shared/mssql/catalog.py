"""A SQL Server table's columns from its own catalog, mapped to the snapshot's `TableSchema`.

Why not SQLAlchemy reflection: it loses what the snapshot needs to be exact (``datetime2(7)`` vs
``datetime2(3)``, ``nvarchar(max)`` vs ``nvarchar(4000)``, CLR types such as ``hierarchyid``) and
cannot say which columns are computed or rowversions. One query over ``INFORMATION_SCHEMA.COLUMNS``
joined with ``sys.columns`` / ``sys.types`` / ``sys.computed_columns`` / ``sys.identity_columns`` and
the primary key from ``sys.indexes`` / ``sys.index_columns`` answers all of it, with the schema and
table names as bind parameters (never interpolated).

Two kinds of column are left out of the snapshot entirely:

* **rowversion** (``timestamp``): SQL Server rewrites it on every update of the row, and also when
  an update changes nothing, so it would make rows look changed that are not, and its value means
  nothing outside its database. A rowversion key is refused.
* **computed** columns: derived from other columns of the same row, so they carry no information of
  their own; non-persisted ones are recomputed on every read, may be non-deterministic
  (``GETDATE()``) and may fail to compute (``1/0``), which would fail the whole extraction. A
  computed column named in the configured key is kept: the key must be in the snapshot, and SQL
  Server only allows deterministic, persisted expressions in a primary key.

Character lengths are in characters (``CHARACTER_MAXIMUM_LENGTH``; -1 for ``max``), binary lengths
in bytes; ``text``/``ntext``/``image``/``xml`` and ``max`` types get no length.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from shared import identifiers, logs
from shared.mssql.quoting import quote_mssql
from shared.schema import Column, TableSchema
from shared.source_names import SourceNameError, matched_all
from shared.types import TypeMappingError, bigquery_type_for_mssql

log = logs.get(__name__)

DEFAULT_SCHEMA = "dbo"

# The parameters are SQLAlchemy bind parameters (:schema, :table); pymssql receives them as
# N'...' literals it quotes itself. COLLATE DATABASE_DEFAULT on the sys.* side avoids a collation
# conflict in contained databases, whose catalog collation differs from the database's.
COLUMNS_SQL = """\
SELECT
    c.COLUMN_NAME AS name,
    c.ORDINAL_POSITION AS ordinal,
    c.DATA_TYPE AS data_type,
    t.name AS declared_type,
    c.CHARACTER_MAXIMUM_LENGTH AS max_length,
    c.NUMERIC_PRECISION AS numeric_precision,
    c.NUMERIC_SCALE AS numeric_scale,
    c.DATETIME_PRECISION AS datetime_precision,
    CAST(CASE WHEN c.IS_NULLABLE = 'YES' THEN 1 ELSE 0 END AS bit) AS nullable,
    CAST(CASE WHEN ic.column_id IS NULL THEN 0 ELSE 1 END AS bit) AS is_identity,
    CAST(CASE WHEN cc.column_id IS NULL THEN 0 ELSE 1 END AS bit) AS is_computed,
    CAST(CASE WHEN sc.system_type_id = 189 THEN 1 ELSE 0 END AS bit) AS is_rowversion,
    c.COLLATION_NAME AS collation,
    pk.key_ordinal AS primary_key_ordinal
FROM INFORMATION_SCHEMA.COLUMNS AS c
JOIN sys.schemas AS s
    ON s.name COLLATE DATABASE_DEFAULT = c.TABLE_SCHEMA
JOIN sys.objects AS o
    ON o.schema_id = s.schema_id AND o.name COLLATE DATABASE_DEFAULT = c.TABLE_NAME AND o.type IN ('U', 'V')
JOIN sys.columns AS sc
    ON sc.object_id = o.object_id AND sc.name COLLATE DATABASE_DEFAULT = c.COLUMN_NAME
JOIN sys.types AS t
    ON t.user_type_id = sc.user_type_id
LEFT JOIN sys.computed_columns AS cc
    ON cc.object_id = sc.object_id AND cc.column_id = sc.column_id
LEFT JOIN sys.identity_columns AS ic
    ON ic.object_id = sc.object_id AND ic.column_id = sc.column_id
LEFT JOIN (
    SELECT ixc.object_id, ixc.column_id, ixc.key_ordinal
    FROM sys.indexes AS ix
    JOIN sys.index_columns AS ixc
        ON ixc.object_id = ix.object_id AND ixc.index_id = ix.index_id
    WHERE ix.is_primary_key = 1
) AS pk
    ON pk.object_id = sc.object_id AND pk.column_id = sc.column_id
WHERE c.TABLE_SCHEMA = :schema AND c.TABLE_NAME = :table
ORDER BY c.ORDINAL_POSITION"""

_MAX = -1
# Types whose length says nothing useful (fixed 2 GB / 1 G characters, or not a length at all).
_NO_LENGTH = {"text", "ntext", "image", "xml", "sql_variant", "hierarchyid", "geography", "geometry",
              "uniqueidentifier", "timestamp", "rowversion"}
_CHARACTER_TYPES = {"char", "varchar", "nchar", "nvarchar", "binary", "varbinary", "sysname"}
_FRACTIONAL_SECOND_TYPES = {"time", "datetime2", "datetimeoffset"}
_DECIMAL_TYPES = {"decimal", "numeric"}
_MONEY = {"money": (19, 4), "smallmoney": (10, 4)}


class MssqlCatalogError(LookupError):
    """The catalog does not describe the table the config names, or describes one we cannot copy."""


@dataclass(frozen=True)
class CatalogColumn:
    """One row of `COLUMNS_SQL`, typed; the catalog's answer is data, so it is tested as data."""

    name: str
    ordinal: int
    data_type: str
    max_length: int | None = None
    numeric_precision: int | None = None
    numeric_scale: int | None = None
    datetime_precision: int | None = None
    nullable: bool = True
    is_identity: bool = False
    is_computed: bool = False
    is_rowversion: bool = False
    collation: str | None = None
    primary_key_ordinal: int | None = None
    declared_type: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> "CatalogColumn":
        def number(key: str) -> int | None:
            value = row.get(key)
            return None if value is None else int(value)  # type: ignore[call-overload]

        rowversion = bool(row.get("is_rowversion")) or str(row["data_type"]).lower() in ("timestamp", "rowversion")
        return cls(
            name=str(row["name"]), ordinal=int(row["ordinal"]),  # type: ignore[call-overload]
            data_type=str(row["data_type"]).strip().lower(),
            max_length=number("max_length"), numeric_precision=number("numeric_precision"),
            numeric_scale=number("numeric_scale"), datetime_precision=number("datetime_precision"),
            nullable=bool(row.get("nullable", True)), is_identity=bool(row.get("is_identity")),
            is_computed=bool(row.get("is_computed")), is_rowversion=rowversion,
            collation=None if row.get("collation") is None else str(row["collation"]),
            primary_key_ordinal=number("primary_key_ordinal"),
            declared_type=None if row.get("declared_type") is None else str(row["declared_type"]),
        )

    @property
    def precision(self) -> int | None:
        """Digits for decimals and money, fractional-second digits for time/datetime2/datetimeoffset."""
        if self.data_type in _DECIMAL_TYPES:
            return self.numeric_precision
        if self.data_type in _MONEY:
            return _MONEY[self.data_type][0]
        if self.data_type in _FRACTIONAL_SECOND_TYPES:
            return self.datetime_precision
        return None

    @property
    def scale(self) -> int | None:
        if self.data_type in _DECIMAL_TYPES:
            return self.numeric_scale
        if self.data_type in _MONEY:
            return _MONEY[self.data_type][1]
        return None

    @property
    def length(self) -> int | None:
        """Characters (or bytes for binary types); None for ``max`` and the large-object types."""
        if self.data_type in _NO_LENGTH or self.max_length is None or self.max_length == _MAX:
            return None
        return self.max_length if self.data_type in _CHARACTER_TYPES else None

    @property
    def source_type(self) -> str:
        """The type as one would declare it: ``decimal(12,2)``, ``nvarchar(max)``, ``datetime2(7)``."""
        name = self.data_type
        if name in _DECIMAL_TYPES:
            return f"{name}({self.numeric_precision},{self.numeric_scale})"
        if name in _FRACTIONAL_SECOND_TYPES and self.datetime_precision is not None:
            return f"{name}({self.datetime_precision})"
        if name in _CHARACTER_TYPES and name != "sysname" and self.max_length is not None:
            return f"{name}({'max' if self.max_length == _MAX else self.max_length})"
        return name


def excluded_reason(column: CatalogColumn) -> str | None:
    """Why a column stays out of the snapshot (see the module docstring), or None."""
    if column.is_rowversion:
        return "rowversion: changes on every update, meaningless outside the source"
    if column.is_computed:
        return "computed: derived from other columns of the row"
    return None


def snapshot_column(column: CatalogColumn, key: Iterable[str]) -> Column:
    """The contract's view of one catalog column; MssqlCatalogError if it has no BigQuery type."""
    try:
        bq_type = bigquery_type_for_mssql(column.data_type, column.numeric_precision, column.numeric_scale,
                                          column.max_length)
        bq_name = identifiers.bigquery_column_for(column.name)
    except (TypeMappingError, identifiers.IdentifierError) as error:
        declared = column.declared_type or column.data_type
        raise MssqlCatalogError(f"column {column.name!r} ({declared}): {error}") from None
    return Column(
        name=column.name, bq_name=bq_name, source_type=column.source_type, bq_type=bq_type,
        nullable=column.nullable and column.name not in set(key),
        precision=column.precision, scale=column.scale, length=column.length,
    )


def schema_from_catalog(rows: Iterable[Mapping[str, object]], schema: str, table: str,
                        key: list[str] | None) -> TableSchema:
    """The snapshot schema from catalog rows: ordinal order, excluded columns dropped, key checked;
    no configured key means the primary key, and a heap without one is keyless."""
    where = f"{schema}.{table}"
    catalog = sorted((CatalogColumn.from_row(row) for row in rows), key=lambda c: c.ordinal)
    if not catalog:
        raise MssqlCatalogError(f"table {where} not found in the source (or not visible to this login)")
    if not key:
        key = [c.name for c in sorted((c for c in catalog if c.primary_key_ordinal),
                                      key=lambda c: c.primary_key_ordinal or 0)]
        if not key:
            log.info("%s is a heap without a primary key and has no configured key: replicated as keyless "
                     "(rows matched by row hash and number of copies, full snapshots only)", where)
    by_name = {c.name: c for c in catalog}
    try:
        key = matched_all(key, list(by_name), "key column")
    except SourceNameError as error:
        raise MssqlCatalogError(f"{where}: {error}") from None
    unusable = [k for k in key if by_name[k].is_rowversion]
    if unusable:
        raise MssqlCatalogError(f"{where}: key column(s) {unusable} are rowversions, which change on every update")
    for column in catalog:
        try:
            quote_mssql(column.name)  # refuses names the SELECT could not carry, before any row is read
        except identifiers.IdentifierError as error:
            raise MssqlCatalogError(f"{where}: {error}") from None
    kept, excluded = [], []
    for column in catalog:
        reason = None if column.name in key else excluded_reason(column)
        if reason:
            excluded.append(f"{column.name} ({reason})")
        else:
            kept.append(snapshot_column(column, key))
    if excluded:
        log.info("%s: column(s) left out of the snapshot: %s", where, "; ".join(excluded))
    if key:
        _warn_if_key_is_not_primary_key(catalog, key, where)
    try:
        return TableSchema(columns=kept, key=list(key), keyless=not key)
    except ValidationError as error:
        raise MssqlCatalogError(f"{where}: {error.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def discover_mssql(connection: Connection, schema: str, table: str, key: list[str] | None) -> TableSchema:
    """Reads the catalog for `schema`.`table` on an open connection and maps it; see the module docstring."""
    result = connection.execute(sa.text(COLUMNS_SQL), {"schema": schema, "table": table})
    return schema_from_catalog(result.mappings().all(), schema, table, key)


def _warn_if_key_is_not_primary_key(catalog: list[CatalogColumn], key: list[str], where: str) -> None:
    """A configured key that is not the primary key is allowed (views, heaps) but worth a line in the
    log: its uniqueness is then only checked after loading, by the validator."""
    in_key = sorted((c for c in catalog if c.primary_key_ordinal), key=lambda c: c.primary_key_ordinal or 0)
    primary = [c.name for c in in_key]
    if not primary:
        log.info("%s has no primary key; the configured key %s is trusted and checked after loading", where, key)
    elif primary != list(key):
        log.warning("%s: configured key %s is not the primary key %s", where, key, primary)
