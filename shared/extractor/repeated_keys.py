"""The last guard before a snapshot ships a key twice: BigQuery's MERGE cannot match a target row to
two source rows, so a repeated key would let the first load through and refuse every later one.

The source's own query leaves repeated keys out where it can count them (`find_duplicated_keys`);
SQL Server is not counted, and a row can be inserted between the count and the read. Rows arrive
in key order, so a repeat is two neighbours with the same key hash, within a chunk or across two.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from shared.extractor.source import SourceError
from shared.schema import KEY_HASH_COLUMN, TableSchema


class RepeatedKeyCheck:
    """Raises SourceError (the table fails alone, no manifest) at the first key two rows hold."""

    def __init__(self, table: str, schema: TableSchema) -> None:
        self._table = table
        self._schema = schema
        self._last: str | None = None  # the previous chunk's last key hash

    def check(self, rows: pa.Table) -> None:
        if self._schema.keyless or not len(rows):
            return
        hashes = rows.column(KEY_HASH_COLUMN).combine_chunks()
        if self._last is not None and hashes[0].as_py() == self._last:
            self._refuse(rows, 0)
        repeats = pc.equal(hashes.slice(1), hashes.slice(0, len(hashes) - 1))
        if pc.any(repeats).as_py():
            self._refuse(rows, pc.index(repeats, True).as_py() + 1)
        self._last = hashes[-1].as_py()

    def _refuse(self, rows: pa.Table, at: int) -> None:
        key = tuple(rows.column(p)[at].as_py() for p in self._schema.key_positions)
        raise SourceError(f"table {self._table!r}: key {key!r} is held by more than one row of the source; "
                          f"nothing was shipped. Make {self._schema.key} unique in the source (a primary key "
                          "or unique index), or configure a key that is")
