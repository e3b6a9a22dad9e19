"""The benchmark table: 20 columns of realistic types, generated deterministically in bounded memory.

Pure Python (standard library, plus psycopg2/duckdb only where those databases are written), so the
same rows come out in the project's virtualenv and in .venv-bench: SQLite and PostgreSQL copies are
written in one pass from one generator; the DuckDB copy (for reladiff) is generated again from the
same seed and is identical.

Row i of a seed is always the same, whatever the batch size, so copies can be compared value by value.
SQLite stores values the way SQLAlchemy's SQLite dialect reads them back (see matrix_sync.sample):
DATE as 'YYYY-MM-DD', DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff', BOOLEAN as 0/1, DECIMAL as text.
"""
from __future__ import annotations

import io
import random
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

GENERATOR_VERSION = 1
SEED = 20261125
BATCH_ROWS = 10_000
KEY = "id"

# (name, SQLite declared type, PostgreSQL type, DuckDB type)
COLUMNS: list[tuple[str, str, str, str]] = [
    ("id", "BIGINT NOT NULL PRIMARY KEY", "bigint NOT NULL PRIMARY KEY", "BIGINT NOT NULL PRIMARY KEY"),
    ("customer_id", "INTEGER NOT NULL", "integer NOT NULL", "INTEGER NOT NULL"),
    ("quantity", "SMALLINT", "smallint", "SMALLINT"),
    ("amount", "DECIMAL(12,2) NOT NULL", "numeric(12,2) NOT NULL", "DECIMAL(12,2) NOT NULL"),
    ("unit_price", "DECIMAL(10,4)", "numeric(10,4)", "DECIMAL(10,4)"),
    ("tax_rate", "DECIMAL(5,4)", "numeric(5,4)", "DECIMAL(5,4)"),
    ("weight_kg", "FLOAT", "double precision", "DOUBLE"),
    ("order_date", "DATE NOT NULL", "date NOT NULL", "DATE NOT NULL"),
    ("ship_date", "DATE", "date", "DATE"),
    ("created_at", "DATETIME NOT NULL", "timestamp NOT NULL", "TIMESTAMP NOT NULL"),
    ("updated_at", "DATETIME", "timestamp", "TIMESTAMP"),
    ("is_paid", "BOOLEAN NOT NULL", "boolean NOT NULL", "BOOLEAN NOT NULL"),
    ("is_gift", "BOOLEAN", "boolean", "BOOLEAN"),
    ("status", "VARCHAR(20) NOT NULL", "varchar(20) NOT NULL", "VARCHAR NOT NULL"),
    ("customer_name", "NVARCHAR(100)", "varchar(100)", "VARCHAR"),
    ("email", "VARCHAR(320)", "varchar(320)", "VARCHAR"),
    ("city", "NVARCHAR(60)", "varchar(60)", "VARCHAR"),
    ("country_code", "CHAR(2)", "char(2)", "VARCHAR"),
    ("notes", "TEXT", "text", "VARCHAR"),
    ("loyalty_points", "BIGINT", "bigint", "BIGINT"),
]
NAMES = [c[0] for c in COLUMNS]
# positions by kind, for the per-database adapters
_DECIMALS = {3: 2, 4: 4, 5: 4}
_DATES = (7, 8)
_DATETIMES = (9, 10)
_BOOLS = (11, 12)

_FIRST = ("Anna", "José", "Zoë", "Jürgen", "François", "Søren", "Łukasz", "Chloé", "Mårten", "Ingrid",
          "Siobhán", "Björn", "Mohammed", "Ngozi", "Priya", "Олег", "Νίκος", "Ahmet", "Émile", "John",
          "Agnieszka", "Tomás", "Eliška", "Margaret", "Wei", "Yuki")
_LAST = ("Müller", "Strauß", "García", "Nørgaard", "O'Brien", "Dvořák", "Kowalczyk", "Smith", "Nguyễn",
         "Çelik", "van der Berg", "Петров", "Παπαδόπουλος", "Dubois", "Weiß", "Ruiz-Peña", "Lindqvist")
_CJK = ("山田 太郎", "王 芳", "김 민준", "佐藤 花子", "李 娜", "陳 美玲")
_CITIES = ("München", "Zürich", "São Paulo", "Kraków", "Malmö", "Αθήνα", "Москва", "東京", "서울", "Reykjavík",
           "Liège", "Cluj-Napoca", "Ørsted", "New York", "Dublin", "Québec", "İstanbul", "Łódź")
_COUNTRIES = ("DE", "CH", "BR", "PL", "SE", "GR", "RU", "JP", "KR", "IS", "BE", "RO", "DK", "US", "IE", "CA", "TR")
_STATUSES = ("delivered", "delivered", "delivered", "shipped", "pending", "cancelled", "returned")
_NOTES = ("Leave at the back door", "Rechnung per Post, bitte", "Client très fidèle", "配達は午前中にお願いします",
          "VIP ⭐", "Gate code 4711", "Große Lieferung – Hof benutzen", "Fragile: glass 🍷", "",
          "Tab\tand newline\nin one note", "Back\\slash and \"quotes\"", "  leading and trailing  ")
_DOMAINS = ("example.com", "mail.example.org", "post.example.de", "exemple.fr")
_EPOCH = date(2015, 1, 1)
_EPOCH_DT = datetime(2015, 1, 1)
_DAYS = 3650


def parse_size(text: str) -> int:
    """'100k' -> 100_000, '1M' -> 1_000_000, '2500' -> 2500."""
    text = text.strip().lower().replace("_", "")
    factor = 1
    if text.endswith("k"):
        factor, text = 1_000, text[:-1]
    elif text.endswith("m"):
        factor, text = 1_000_000, text[:-1]
    value = int(float(text) * factor)
    if value < 10:
        raise ValueError(f"size {text!r} is too small (at least 10 rows)")
    return value


def size_label(rows: int) -> str:
    if rows >= 1_000_000 and rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows >= 1_000 and rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def table_name(rows: int, namespace: str = "") -> str:
    return f"matrix_bench_{size_label(rows).lower()}" + (f"_{namespace}" if namespace else "")


def make_row(rng: random.Random, row_id: int) -> tuple:
    """One row as Python values (Decimal, date, datetime, bool, str, None)."""
    r = rng.random
    order_day = _EPOCH + timedelta(days=int(r() * _DAYS))
    created = _EPOCH_DT + timedelta(days=(order_day - _EPOCH).days, microseconds=int(r() * 86_400_000_000))
    roll = r()
    if roll < 0.07:
        name = _CJK[int(r() * len(_CJK))]
    elif roll < 0.95:
        name = f"{_FIRST[int(r() * len(_FIRST))]} {_LAST[int(r() * len(_LAST))]}"
    else:
        name = None
    city = int(r() * len(_CITIES))
    quantity = int(r() * 20) + 1
    unit = Decimal(int(r() * 5_000_000) + 100).scaleb(-4)
    return (
        row_id,
        int(r() * 250_000) + 1,
        quantity if r() > 0.02 else None,
        (unit * quantity).quantize(Decimal("0.01")),
        unit if r() > 0.05 else None,
        Decimal(int(r() * 2500)).scaleb(-4) if r() > 0.1 else None,
        round(r() * 40, 3) if r() > 0.15 else None,
        order_day,
        order_day + timedelta(days=int(r() * 14)) if r() > 0.2 else None,
        created,
        created + timedelta(seconds=int(r() * 900_000), microseconds=int(r() * 1_000_000)) if r() > 0.4 else None,
        r() < 0.8,
        (r() < 0.1) if r() > 0.3 else None,
        _STATUSES[int(r() * len(_STATUSES))],
        name,
        f"customer{row_id % 250_000}@{_DOMAINS[int(r() * len(_DOMAINS))]}" if r() > 0.1 else None,
        _CITIES[city],
        _COUNTRIES[city % len(_COUNTRIES)] if r() > 0.03 else None,
        _NOTES[int(r() * len(_NOTES))] if r() < 0.3 else None,
        int(r() * 10_000_000_000) if r() > 0.5 else None,
    )


def rows(count: int, seed: int = SEED) -> Iterator[list[tuple]]:
    """Batches of rows with ids 2, 4, ..., 2*count: every id is even, so odd ids are free for planted inserts."""
    rng = random.Random(seed)
    batch: list[tuple] = []
    for n in range(count):
        batch.append(make_row(rng, 2 * (n + 1)))
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


# --- per-database adapters -----------------------------------------------------------------------

def for_sqlite(row: Sequence[object]) -> tuple:
    values = list(row)
    for position in _DECIMALS:
        if values[position] is not None:
            values[position] = str(values[position])
    for position in _DATES:
        if values[position] is not None:
            values[position] = values[position].isoformat()
    for position in _DATETIMES:
        if values[position] is not None:
            values[position] = values[position].isoformat(" ", "microseconds")
    for position in _BOOLS:
        if values[position] is not None:
            values[position] = int(values[position])
    return tuple(values)


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


def copy_lines(batch: Sequence[Sequence[object]]) -> str:
    return "".join("\t".join(_copy_text(v) for v in row) + "\n" for row in batch)


# --- writing the copies ----------------------------------------------------------------------------

def sqlite_create(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t, _, _ in COLUMNS)})"


def postgres_create(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, _, t, _ in COLUMNS)})"


def duckdb_create(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, _, _, t in COLUMNS)})"


def _stamp(count: int, seed: int) -> str:
    return f"v{GENERATOR_VERSION}:{count}:{seed}"


def sqlite_ready(path: Path, table: str, count: int, seed: int = SEED) -> bool:
    if not path.exists():
        return False
    try:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT stamp FROM bench_meta WHERE table_name = ?", (table,)).fetchone()
    except sqlite3.Error:
        return False
    return bool(row) and row[0] == _stamp(count, seed)


def postgres_ready(dsn: str, table: str, count: int, seed: int = SEED) -> bool:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return False
        cursor.execute("SELECT stamp FROM bench_meta WHERE table_name = %s", (table,))
        row = cursor.fetchone()
    conn.close()
    return bool(row) and row[0] == _stamp(count, seed)


def generate(count: int, *, sqlite_path: Path | None, postgres_dsn: str | None, seed: int = SEED,
             table: str | None = None) -> dict[str, float]:
    """Writes the table into whichever of SQLite and PostgreSQL is given, one batch at a time.

    Memory holds one batch of rows (BATCH_ROWS) whatever `count` is. Returns seconds per target.
    """
    import time

    table = table or table_name(count)
    started = time.monotonic()
    lite = pg = cursor = None
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        sqlite_path.unlink(missing_ok=True)
        lite = sqlite3.connect(sqlite_path)
        lite.execute("PRAGMA journal_mode=OFF")
        lite.execute("PRAGMA synchronous=OFF")
        lite.execute(sqlite_create(table))
        insert = f"INSERT INTO {table} VALUES ({', '.join('?' * len(COLUMNS))})"
    if postgres_dsn is not None:
        import psycopg2

        pg = psycopg2.connect(postgres_dsn)
        cursor = pg.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS {table}, {table}_planted")
        cursor.execute(postgres_create(table))
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (table_name text PRIMARY KEY, stamp text)")
        cursor.execute("DELETE FROM bench_meta WHERE table_name = %s", (table,))
        pg.commit()
    for batch in rows(count, seed):
        if lite is not None:
            lite.executemany(insert, [for_sqlite(row) for row in batch])
        if cursor is not None:
            cursor.copy_expert(f"COPY {table} FROM STDIN", io.StringIO(copy_lines(batch)))
    if lite is not None:
        lite.execute("CREATE TABLE IF NOT EXISTS bench_meta (table_name TEXT PRIMARY KEY, stamp TEXT)")
        lite.execute("INSERT OR REPLACE INTO bench_meta VALUES (?, ?)", (table, _stamp(count, seed)))
        lite.commit()
        lite.close()
    if pg is not None and cursor is not None:
        cursor.execute(f"ANALYZE {table}")
        cursor.execute("INSERT INTO bench_meta VALUES (%s, %s)", (table, _stamp(count, seed)))
        pg.commit()
        pg.close()
    return {"seconds": round(time.monotonic() - started, 2)}


def generate_duckdb(path: Path, count: int, seed: int = SEED, table: str | None = None) -> None:
    """The same rows in a DuckDB file (reladiff's other side), through Arrow batches."""
    import duckdb
    import pyarrow as pa

    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    table = table or table_name(count)
    con.execute(duckdb_create(table))
    for batch in rows(count, seed):
        columns = list(zip(*batch, strict=True))
        arrow = pa.table({name: pa.array(values) for name, values in zip(NAMES, columns, strict=True)})
        con.register("batch", arrow)
        con.execute(f"INSERT INTO {table} SELECT * FROM batch")
        con.unregister("batch")
    con.execute("CREATE TABLE bench_meta (table_name VARCHAR, stamp VARCHAR)")
    con.execute("INSERT INTO bench_meta VALUES (?, ?)", [table, _stamp(count, seed)])
    con.close()


# --- changes ------------------------------------------------------------------------------------------

def mutate_sqlite(path: Path, table: str, *, updates: float, inserts: float, deletes: float, seed: int) -> dict[str, int]:
    """A change batch: `updates`, `inserts`, `deletes` as fractions of the current row count."""
    rng = random.Random(seed)
    with sqlite3.connect(path) as conn:
        count, max_id = conn.execute(f"SELECT COUNT(*), MAX(id) FROM {table}").fetchone()
        n_upd, n_ins, n_del = round(count * updates), round(count * inserts), round(count * deletes)
        chosen = [r[0] for r in conn.execute(
            f"SELECT id FROM {table} ORDER BY random() LIMIT ?", (n_upd + n_del,))]
        rng.shuffle(chosen)
        to_update, to_delete = chosen[:n_upd], chosen[n_upd:]
        conn.executemany(
            f"UPDATE {table} SET status = ?, amount = amount + 1, updated_at = ?, notes = ? WHERE id = ?",
            [(_STATUSES[rng.randrange(len(_STATUSES))], f"2026-11-25 12:00:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}",
              f"changed {seed} ✓", row_id) for row_id in to_update])
        conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(row_id,) for row_id in to_delete])
        new = [for_sqlite(make_row(rng, max_id + 1 + 2 * k)) for k in range(n_ins)]
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(COLUMNS))})", new)
    return {"updated": len(to_update), "inserted": n_ins, "deleted": len(to_delete), "rows_before": count}


def planted_changes(count: int, differences: int, seed: int = 99) -> tuple[list[int], list[int], list[tuple]]:
    """(ids to update, ids to delete, rows to insert): `differences` differing keys, half updates,
    a quarter deletes and a quarter inserts (odd ids, which the generator never uses)."""
    rng = random.Random(seed)
    n_del = n_ins = differences // 4
    n_upd = differences - n_del - n_ins
    ids = [2 * (i + 1) for i in rng.sample(range(count), n_upd + n_del)]
    new_rows = [make_row(rng, 2 * (rng.randrange(count) + 1)) for _ in range(n_ins)]
    inserted = []
    seen = set()
    for row in new_rows:  # odd ids next to existing rows
        row_id = row[0] - 1 if row[0] - 1 not in seen else row[0] + 1
        seen.add(row_id)
        inserted.append((row_id, *row[1:]))
    return ids[:n_upd], ids[n_upd:], inserted


def plant_sqlite(path: Path, table: str, count: int, differences: int) -> None:
    to_update, to_delete, to_insert = planted_changes(count, differences)
    with sqlite3.connect(path) as conn:
        conn.executemany(f"UPDATE {table} SET notes = 'planted difference' WHERE id = ?", [(i,) for i in to_update])
        conn.executemany(f"DELETE FROM {table} WHERE id = ?", [(i,) for i in to_delete])
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(COLUMNS))})",
                         [for_sqlite(row) for row in to_insert])


def plant_postgres(dsn: str, table: str, count: int, differences: int) -> str:
    """A copy of the table with the planted differences; returns its name."""
    import psycopg2

    planted = f"{table}_planted"
    to_update, to_delete, to_insert = planted_changes(count, differences)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {planted}")
        cursor.execute(f"CREATE TABLE {planted} (LIKE {table} INCLUDING ALL)")
        cursor.execute(f"INSERT INTO {planted} SELECT * FROM {table}")
        if to_update:
            cursor.execute(f"UPDATE {planted} SET notes = 'planted difference' WHERE id = ANY(%s)", (to_update,))
        if to_delete:
            cursor.execute(f"DELETE FROM {planted} WHERE id = ANY(%s)", (to_delete,))
        if to_insert:
            cursor.copy_expert(f"COPY {planted} FROM STDIN", io.StringIO(copy_lines(to_insert)))
        cursor.execute(f"ANALYZE {planted}")
    conn.close()
    return planted


def drop_postgres(dsn: str, table: str) -> None:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}, {table}_planted")
        cursor.execute("SELECT to_regclass('bench_meta') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute("DELETE FROM bench_meta WHERE table_name = %s", (table,))
    conn.close()
