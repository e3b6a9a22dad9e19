"""The discovered shape of a source table, shared by extractor, manifest, loader and checks."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_HASH_COLUMN = "_key_hash"
ROW_HASH_COLUMN = "_row_hash"
HASH_COLUMNS = (KEY_HASH_COLUMN, ROW_HASH_COLUMN)
RAW_HASH_COLUMN = "_raw_hash"  # key index only: the row's values as read (shared.raw_hash)


class Column(BaseModel):
    """One source column and where it lands in BigQuery."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="column name in the source")
    bq_name: str = Field(description="column name in BigQuery")
    source_type: str = Field(description="the source's own type name, e.g. decimal(12,2)")
    bq_type: str = Field(description="BigQuery standard SQL type: INT64, NUMERIC, STRING, ...")
    nullable: bool = True
    precision: int | None = None
    scale: int | None = None
    length: int | None = None


class TableSchema(BaseModel):
    """Columns in source ordinal order plus the key; the order is part of the row hash.

    A keyless table (no primary key, none configured) has an empty key: a row is identified by its
    row hash, so its key hash is its row hash, and identical rows by their number of copies.
    `keyless` is left out of the JSON when false, so manifests of keyed tables stay as they were."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: list[Column]
    key: list[str] = Field(description="key column names, source names; empty for a keyless table")
    keyless: bool = Field(default=False, exclude_if=lambda keyless: not keyless,
                          description="no key: rows replicate by row hash and multiplicity, full snapshots only")

    @model_validator(mode="after")
    def _key_columns_exist(self) -> "TableSchema":
        names = {c.name for c in self.columns}
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"key columns {missing} are not columns of the table")
        if self.keyless and self.key:
            raise ValueError("a keyless table cannot have key columns")
        if not self.key and not self.keyless:
            raise ValueError("a table needs at least one key column, or to be keyless")
        if not self.columns:
            raise ValueError("a table needs at least one column")
        by_bq_name: dict[str, list[str]] = {}
        for column in self.columns:
            by_bq_name.setdefault(column.bq_name.lower(), []).append(column.name)
        for names in by_bq_name.values():
            if len(names) > 1:
                raise ValueError(f"columns {', '.join(map(repr, names))} would be one BigQuery column "
                                 "(BigQuery column names ignore case); replicate a view that renames them")
        return self

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def key_columns(self) -> list[Column]:
        return [self.column(k) for k in self.key]

    @property
    def key_positions(self) -> list[int]:
        names = [c.name for c in self.columns]
        return [names.index(k) for k in self.key]

    @property
    def key_hash_positions(self) -> list[int]:
        """The positions `_key_hash` is computed from: the key's, or every column of a keyless table
        (whose key hash then equals its row hash)."""
        return list(range(len(self.columns))) if self.keyless else self.key_positions

    def hash_keyed(self) -> "TableSchema":
        """This schema, or for a keyless table the same columns keyed by all of them: a keyed schema
        with the same key hash, for SQL written for keyed tables that rebuilds the hashes."""
        if not self.keyless:
            return self
        return TableSchema(columns=self.columns, key=[c.name for c in self.columns])
