"""One chunk of source rows made ready for the snapshot: checked, converted to Arrow, hashed.

Two paths with one result. The columnar path (`shared.columnar_convert`, `shared.columnar_hash`)
works a column at a time and takes any chunk it can handle exactly and finds nothing wrong with.
Every other chunk goes the per-row path, the reference implementation: SQLAlchemy's processors,
the generated row model (`shared.models.chunk_validator`), `shared.types.arrow_value_converter`
and `shared.hashing.RowHasher`, value by value, quarantining each bad row with its reason. The
differential tests in tests/unit/test_columnar_*.py hold the two to the same bytes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from shared import logs
from shared.columnar_convert import ColumnConverter, NotColumnar, Processor
from shared.columnar_hash import ColumnarHashError, hash_columns
from shared.extractor import quarantine
from shared.extractor.arrow_stream import ArrowChunk
from shared.extractor.dbapi_stream import SourceChunk
from shared.hashing import RowHasher, TableFingerprint
from shared.models import chunk_validator, field_specs
from shared.schema import KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema
from shared.types import arrow_type, arrow_value_converter

log = logs.get(__name__)
_CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError)


def hash_fields() -> list[pa.Field]:
    return [pa.field(name, pa.string(), nullable=False) for name in (KEY_HASH_COLUMN, ROW_HASH_COLUMN)]


def arrow_schema(schema: TableSchema) -> pa.Schema:
    fields = [pa.field(c.bq_name, arrow_type(c.bq_type), nullable=c.nullable) for c in schema.columns]
    return pa.schema(fields + hash_fields())


@dataclass
class Prepared:
    """A chunk converted for BigQuery and hashed, as the Arrow table of a part (every column of
    `arrow_schema` plus both hashes); rows that could not be converted are gone."""

    table: pa.Table
    key_positions: Sequence[int]
    fingerprint: TableFingerprint = field(default_factory=TableFingerprint)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def rows(self) -> list[tuple]:
        data = [self.table.column(i).to_pylist() for i in range(self.table.num_columns - 2)]
        return list(zip(*data, strict=True)) if data else []

    @property
    def hashes(self) -> list[tuple[str, str]]:
        return list(zip(self.key_hashes(), self.row_hashes(), strict=True))

    def key_hashes(self) -> list[str]:
        return self.table.column(KEY_HASH_COLUMN).to_pylist()

    def row_hashes(self) -> list[str]:
        return self.table.column(ROW_HASH_COLUMN).to_pylist()

    def keys(self) -> list[tuple]:
        return list(zip(*(self.table.column(p).to_pylist() for p in self.key_positions), strict=True))


class ChunkPreparer:
    """Prepares the chunks of one table; returns each chunk's rows and its quarantine entries."""

    def __init__(self, schema: TableSchema) -> None:
        self._schema = schema
        self._specs = field_specs(schema)
        self._arrow_schema = arrow_schema(schema)
        self._key_positions = schema.key_positions
        self._hash_positions = schema.key_hash_positions  # a keyless table's key hash is its row hash
        self._width = len(schema.columns)
        self._invalid = chunk_validator(schema)
        self._hasher = RowHasher(self._hash_positions)
        self._converters = [arrow_value_converter(c.bq_type) for c in schema.columns]
        self._columnar: dict[tuple[Processor, ...], list[ColumnConverter]] = {}

    def __call__(self, chunk: Sequence[tuple]) -> tuple[Prepared, list[dict[str, object]]]:
        """An `ArrowChunk`, a `SourceChunk`, or rows of values as SQLAlchemy returns them."""
        if isinstance(chunk, ArrowChunk):
            return self.prepare_arrow(chunk)
        if isinstance(chunk, SourceChunk):
            return self.prepare_raw(chunk.raw, chunk.processors)
        return self.prepare_raw(list(chunk), (None,) * self._width)

    def prepare_raw(self, raw: list[tuple],
                    processors: tuple[Processor, ...]) -> tuple[Prepared, list[dict[str, object]]]:
        """Rows of driver values and the result processor of each column (None: value is final)."""
        if not raw:
            return self._prepared([], []), []
        try:
            return self._by_column(raw, processors), []
        except (NotColumnar, ColumnarHashError) as why:
            log.debug("chunk of %d rows takes the per-row path: %s", len(raw), why)
        return self._by_row(raw, processors)

    def prepare_arrow(self, chunk: ArrowChunk) -> tuple[Prepared, list[dict[str, object]]]:
        """Arrow columns converted as they are; a chunk they cannot be taken from exactly is read
        again by the DBAPI reader and prepared like any `SourceChunk`."""
        if not len(chunk):
            return self._prepared([], []), []
        try:
            converters = self._converters_for(chunk.processors)
            return self._hashed([convert.from_arrow(column) for convert, column in
                                 zip(converters, chunk.columns, strict=True)]), []
        except (NotColumnar, ColumnarHashError) as why:
            log.debug("chunk of %d rows is read again by the DBAPI reader: %s", len(chunk), why)
        reference = chunk.reference()
        return self.prepare_raw(reference.raw, reference.processors)

    def _converters_for(self, processors: tuple[Processor, ...]) -> list[ColumnConverter]:
        converters = self._columnar.get(processors)
        if converters is None:
            converters = [ColumnConverter(s, p) for s, p in zip(self._specs, processors, strict=True)]
            self._columnar[processors] = converters
        return converters

    def _hashed(self, arrays: list[pa.Array]) -> Prepared:
        try:
            key_hashes, row_hashes, fingerprint = hash_columns(arrays, self._hash_positions)
        except pa.ArrowException as error:  # e.g. a chunk whose row texts outgrow 32-bit offsets
            raise NotColumnar(f"hashing: {error}") from None
        table = pa.Table.from_arrays([*arrays, key_hashes, row_hashes], schema=self._arrow_schema)
        return Prepared(table, self._key_positions, fingerprint)

    def _by_column(self, raw: list[tuple], processors: tuple[Processor, ...]) -> Prepared:
        try:
            columns = list(zip(*raw, strict=True))
        except ValueError:
            raise NotColumnar("rows of different widths") from None
        if len(columns) != self._width:
            raise NotColumnar(f"{len(columns)} values for {self._width} columns")
        converters = self._converters_for(processors)
        return self._hashed([convert(column) for convert, column in zip(converters, columns, strict=True)])

    def _by_row(self, raw: list[tuple], processors: tuple[Processor, ...]) -> tuple[Prepared, list[dict[str, object]]]:
        """The reference: each row processed, validated, converted and hashed on its own."""
        rejected: list[dict[str, object]] = []
        processed: list[tuple] = []
        for row in raw:
            try:
                processed.append(self._processed(row, processors) if any(processors) else tuple(row))
            except _CONVERSION_ERRORS as error:  # e.g. SQLite text that is no date
                rejected.append(self.quarantine_entry(row, error))
        good: list[tuple] = []
        invalid = self._invalid(processed)
        for index, row in enumerate(processed):
            if index in invalid:
                rejected.append(self.quarantine_entry(row, ValueError(invalid[index])))
                continue
            try:
                good.append(tuple(convert(value) for convert, value in zip(self._converters, row, strict=True)))
            except _CONVERSION_ERRORS as error:
                rejected.append(self.quarantine_entry(row, error))
        hashes = [self._hasher(row) for row in good]
        return self._prepared(good, hashes), rejected

    def _prepared(self, rows: list[tuple], hashes: list[tuple[str, str]]) -> Prepared:
        fingerprint = TableFingerprint()
        for _, row_hash in hashes:
            fingerprint.add(row_hash)
        columns = [*zip(*rows, strict=True), *zip(*hashes, strict=True)] if rows else [[]] * len(self._arrow_schema)
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, self._arrow_schema, strict=True)]
        return Prepared(pa.Table.from_arrays(arrays, schema=self._arrow_schema), self._key_positions, fingerprint)

    def _processed(self, row: tuple, processors: tuple[Processor, ...]) -> tuple:
        """One raw row through the driver's result processors; an error names its column, as the
        model's errors do (a subclass the name cannot be put into is raised as it is)."""
        values = []
        for column, processor, value in zip(self._schema.columns, processors, row, strict=True):
            try:
                values.append(value if processor is None or value is None else processor(value))
            except _CONVERSION_ERRORS as error:
                if type(error) not in _CONVERSION_ERRORS:
                    raise
                raise type(error)(f"{column.name}: {error}") from error
        return tuple(values)

    def quarantine_entry(self, row: tuple, error: Exception) -> dict[str, object]:
        """The row's quarantine line (`shared.extractor.quarantine`: compact, every value bounded)."""
        return quarantine.entry([c.name for c in self._schema.columns], self._schema.key, row, error)
