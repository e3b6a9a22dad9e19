"""How much a chunk holds: `extract.chunk_rows` rows at most, and fewer once its values reach about
`extract.chunk_bytes`, so that a table of large documents is read in the memory a table of narrow
rows takes. While a chunk is gathered, each fetch asks for as many rows as the budget left holds at
the width of the rows fetched last (`FETCH_ROWS` at most): rows as wide as the last pass the budget
by about one row; rows suddenly wider, by one fetch."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from shared.schema import TableSchema

FETCH_ROWS = 256          # the most rows one fetch asks for while a chunk is gathered
FIXED_VALUE_BYTES = 16    # what a value of a fixed-width type is counted as
_FIRST_FETCH = 16         # rows of a first fetch, before any width is known
_SHORT_TEXT = 64          # declared lengths up to this are counted as fixed-width too
_VARIABLE_TYPES = frozenset({"STRING", "BYTES", "JSON", "GEOGRAPHY"})


def long_value_positions(schema: TableSchema) -> list[int]:
    """Columns whose values can be long: text and binary without a short declared length."""
    return [i for i, c in enumerate(schema.columns)
            if c.bq_type.upper() in _VARIABLE_TYPES and (c.length is None or c.length > _SHORT_TEXT)]


def row_bytes(width: int, long_positions: Sequence[int]) -> Callable[[Sequence[Sequence[object]]], int]:
    """An estimate of what rows of driver values hold: the length of every long value, a fixed
    amount for the others; one pass over the long columns only."""
    fixed = FIXED_VALUE_BYTES * (width - len(long_positions))

    def size(rows: Sequence[Sequence[object]]) -> int:
        long = sum(len(value) for p in long_positions for row in rows
                   if isinstance(value := row[p], (str, bytes, bytearray)))
        return long + fixed * len(rows)
    return size


def gathered(fetch: Callable[[int], list], chunk_rows: int, chunk_bytes: int | None,
             size: Callable[[list], int]) -> Iterator[list]:
    """Chunks of what `fetch(n)` returns (up to n rows, an empty list at the end): `chunk_rows` rows,
    or fewer once their `size` reaches `chunk_bytes`."""
    if chunk_bytes is None:
        while rows := fetch(chunk_rows):
            yield rows
        return
    chunk: list = []
    held, asked = 0, min(_FIRST_FETCH, chunk_rows)
    while rows := fetch(asked):
        chunk.extend(rows)
        fetched = size(rows)
        held += fetched
        if len(chunk) >= chunk_rows or held >= chunk_bytes:
            yield chunk
            chunk, held = [], 0
        per_row = max(1, fetched // len(rows))
        asked = max(1, min(FETCH_ROWS, chunk_rows - len(chunk), (chunk_bytes - held) // per_row))
    if chunk:
        yield chunk
