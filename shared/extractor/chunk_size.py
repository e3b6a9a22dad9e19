"""How much a chunk holds: `extract.chunk_rows` rows at most, and fewer once its values reach about
`extract.chunk_bytes`, so that a table of large documents is read in the memory a table of narrow
rows takes. While a chunk is gathered, each fetch asks for as many rows as the budget left holds at
the width of the rows fetched last, and never more than `fetch_rows` rows: rows as wide as the last
pass the budget by about one row; rows suddenly wider (documents after narrow rows) by one fetch.

The bound: a chunk holds less than `chunk_bytes` plus one fetch, that is `chunk_bytes` plus
`STREAMED_FETCH_ROWS` (4) rows of the widest where the table has long-value columns and the driver's
`fetchmany` reads an already streaming result locally (sqlite3, pymysql's SSCursor, pymssql and
the other drivers read through SQLAlchemy); where the table's widest row is known (SQLite measures
it), plus an eighth of `chunk_bytes` or 4 rows, whichever is more. `FETCH_ROWS` (256) rows where
each fetch is a round trip to the server (psycopg2's named cursor) or the table has no long-value
column (its rows are narrow by their declared types)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from shared.schema import TableSchema

FETCH_ROWS = 256          # the most rows one fetch asks for while a chunk is gathered
STREAMED_FETCH_ROWS = 4   # ... where long values may come and a fetch costs no round trip
_FETCH_SHARE = 8          # ... or, the widest row known, the rows this share of chunk_bytes holds
FIXED_VALUE_BYTES = 16    # what a value of a fixed-width type is counted as
_FIRST_FETCH = 16         # rows of a first fetch, before any width is known
_SHORT_TEXT = 64          # declared lengths up to this are counted as fixed-width too
_VARIABLE_TYPES = frozenset({"STRING", "BYTES", "JSON", "GEOGRAPHY"})


def long_value_positions(schema: TableSchema) -> list[int]:
    """Columns whose values can be long: text and binary without a short declared length."""
    return [i for i, c in enumerate(schema.columns)
            if c.bq_type.upper() in _VARIABLE_TYPES and (c.length is None or c.length > _SHORT_TEXT)]


def fetch_rows(schema: TableSchema, round_trip: bool, chunk_bytes: int | None = None,
               widest_row: int | None = None) -> int:
    """The most rows one fetch may ask for: a few where the table has long-value columns and a
    fetch only takes rows the driver reads from a streaming result (a run of multi-megabyte values
    after narrow rows then passes the budget by those few rows, not by `FETCH_ROWS` of them; 4 rows
    a fetch instead of 256 cost sqlite3 about 0.3 s a million rows), unless the table's widest row
    (`widest_row` bytes, measured) leaves room for more; `FETCH_ROWS` where each fetch is a round
    trip to the server."""
    if round_trip or not long_value_positions(schema):
        return FETCH_ROWS
    if widest_row is None or chunk_bytes is None:
        return STREAMED_FETCH_ROWS
    return max(STREAMED_FETCH_ROWS, min(FETCH_ROWS, chunk_bytes // _FETCH_SHARE // max(1, widest_row)))


def row_bytes(width: int, long_positions: Sequence[int]) -> Callable[[Sequence[Sequence[object]]], int]:
    """An estimate of what rows of driver values hold: the length of every long value, a fixed
    amount for the others; one pass over the long columns only."""
    fixed = FIXED_VALUE_BYTES * (width - len(long_positions))
    positions = tuple(long_positions)

    def size(rows: Sequence[Sequence[object]], sized: tuple[type, ...] = (str, bytes, bytearray)) -> int:
        long = 0
        for row in rows:  # plain loops: half the cost of a generator on the few rows of a fetch
            for p in positions:
                if isinstance(value := row[p], sized):
                    long += len(value)
        return long + fixed * len(rows)
    return size


def gathered(fetch: Callable[[int], list], chunk_rows: int, chunk_bytes: int | None,
             size: Callable[[list], int], most: int = FETCH_ROWS) -> Iterator[list]:
    """Chunks of what `fetch(n)` returns (up to n rows, an empty list at the end): `chunk_rows` rows,
    or fewer once their `size` reaches `chunk_bytes`; each fetch asks for `most` rows at most."""
    if chunk_bytes is None:
        while rows := fetch(chunk_rows):
            yield rows
        return
    most = max(1, min(most, FETCH_ROWS))
    chunk: list = []
    held, asked = 0, min(_FIRST_FETCH, most, chunk_rows)
    while rows := fetch(asked):
        chunk.extend(rows)
        fetched = size(rows)
        held += fetched
        if len(chunk) >= chunk_rows or held >= chunk_bytes:
            yield chunk
            chunk, held = [], 0
        per_row = max(1, fetched // len(rows))
        asked = max(1, min(most, chunk_rows - len(chunk), (chunk_bytes - held) // per_row))
    if chunk:
        yield chunk
