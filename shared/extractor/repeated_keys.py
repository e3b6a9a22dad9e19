"""The last guard before a snapshot ships a key twice: BigQuery's MERGE cannot match a target row to
two source rows, so a repeated key would let the first load through and refuse every later one.

The source's own query leaves repeated keys out where it can count them (`find_duplicated_keys`);
SQL Server is not counted, and a row can be inserted between the count and the read. Rows arrive
in key order, so a repeat is two neighbours with the same key hash, within a chunk or across two,
whose key values are equal too: text keys that differ only in their Unicode normalisation share a
key hash (NFC) while the source, and BigQuery's MERGE, tell them apart.
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
        self._last: tuple[str, tuple[object, ...]] | None = None  # the previous chunk's last key hash and key

    def check(self, rows: pa.Table) -> None:
        if self._schema.keyless or not len(rows):
            return
        hashes = rows.column(KEY_HASH_COLUMN).combine_chunks()
        if self._last is not None and (hashes[0].as_py(), self._key(rows, 0)) == self._last:
            self._refuse(self._last[1])
        same_hash = pc.equal(hashes.slice(1), hashes.slice(0, len(hashes) - 1))
        if pc.any(same_hash).as_py():
            for at in pc.indices_nonzero(same_hash).to_pylist():
                if self._key(rows, at) == self._key(rows, at + 1):
                    self._refuse(self._key(rows, at))
        self._last = (hashes[-1].as_py(), self._key(rows, len(rows) - 1))

    def _key(self, rows: pa.Table, at: int) -> tuple[object, ...]:
        return tuple(rows.column(p)[at].as_py() for p in self._schema.key_positions)

    def _refuse(self, key: tuple[object, ...]) -> None:
        raise SourceError(f"table {self._table!r}: key {key!r} is held by more than one row of the source; "
                          f"nothing was shipped. Make {self._schema.key} unique in the source (a primary key "
                          "or unique index), or configure a key that is")
