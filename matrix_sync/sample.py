"""A sample "Matrix" source database: a print-subscription business in a SQLite file.

`create_sample` builds it deterministically from a seed, streaming rows in batches so even the
"large" size runs in bounded memory. `mutate` applies a random batch of inserts, updates and
deletes and reports exactly what it changed, so a sync can be checked against known differences.

Values are stored the way SQLAlchemy's SQLite dialect reads them back: DATE as 'YYYY-MM-DD',
DATETIME as 'YYYY-MM-DD HH:MM:SS.ffffff', BOOLEAN as 0/1 and DECIMAL as text with the column's
scale (SQLite's numeric affinity stores that as REAL/INTEGER; SQLAlchemy restores the scale).
"""
from __future__ import annotations

import contextlib
import itertools
import random
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path

Row = dict[str, object]

SIZES: dict[str, int] = {"tiny": 20, "small": 200, "medium": 5_000, "large": 100_000}

TABLE_KEYS: dict[str, list[str]] = {
    "customers": ["customer_id"],
    "accounts": ["account_id"],
    "subscriptions": ["subscription_id"],
    "deliveries": ["subscription_id", "delivery_date"],
    "payments": ["account_id", "payment_no"],
}

# Declared types are the names SQLAlchemy's SQLite reflection maps (DECIMAL(p,s), NVARCHAR, ...).
_SCHEMA: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "INTEGER NOT NULL",
        "full_name": "NVARCHAR(200) NOT NULL",
        "email": "VARCHAR(320)",
        "birth_date": "DATE",
        "is_active": "BOOLEAN NOT NULL",
        "created_at": "DATETIME NOT NULL",
        "credit_limit": "DECIMAL(12,2)",
    },
    "accounts": {
        "account_id": "INTEGER NOT NULL",
        "customer_id": "INTEGER NOT NULL",
        "account_no": "VARCHAR(20) NOT NULL",
        "balance": "DECIMAL(14,2) NOT NULL",
        "opened_on": "DATE NOT NULL",
        "closed_on": "DATE",
        "notes": "TEXT",
    },
    "subscriptions": {
        "subscription_id": "INTEGER NOT NULL",
        "account_id": "INTEGER NOT NULL",
        "publication": "NVARCHAR(100) NOT NULL",
        "start_date": "DATE NOT NULL",
        "end_date": "DATE",
        "weekly_price": "DECIMAL(8,2) NOT NULL",
        "auto_renew": "BOOLEAN NOT NULL",
        "discount_rate": "DECIMAL(5,4)",
    },
    "deliveries": {
        "subscription_id": "INTEGER NOT NULL",
        "delivery_date": "DATE NOT NULL",
        "copies": "SMALLINT NOT NULL",
        "status": "VARCHAR(20) NOT NULL",
        "delivered_at": "DATETIME",
        "route_code": "CHAR(6)",
    },
    "payments": {
        "account_id": "INTEGER NOT NULL",
        "payment_no": "INTEGER NOT NULL",
        "amount": "DECIMAL(12,2) NOT NULL",
        "paid_at": "DATETIME NOT NULL",
        "method": "VARCHAR(20) NOT NULL",
        "reference": "NVARCHAR(60)",
        "fee": "FLOAT",
    },
}

BATCH_ROWS = 5_000

# Fixed dates instead of today() so a seed always gives the same file.
_HISTORY_START = date(2015, 1, 1)
_RECENT_START = date(2024, 7, 1)
_REFERENCE = date(2025, 6, 30)
_BIRTH_RANGE = (date(1930, 1, 1), date(2006, 12, 31))

# (choices, cumulative weights in %): on average 1.3 accounts per customer, 1.5 subscriptions
# per account.
_ACCOUNTS_PER_CUSTOMER = ((1, 2, 3), (75, 95, 100))
_SUBSCRIPTIONS_PER_ACCOUNT = ((0, 1, 2, 3), (10, 55, 85, 100))
_DELIVERIES_PER_SUBSCRIPTION = (4, 12)
_PAYMENTS_PER_ACCOUNT = (1, 7)

_FIRST_NAMES = (
    "Anna", "José", "Zoë", "Jürgen", "François", "Søren", "Łukasz", "Chloé", "Mårten", "Ingrid",
    "Siobhán", "Renée", "Björn", "Ana", "Mohammed", "Ngozi", "Priya", "Dmitri", "Олег", "Νίκος",
    "Ahmet", "Émile", "Maria", "John", "Agnieszka", "Tomás", "Eliška", "Margaret",
)
_LAST_NAMES = (
    "Müller", "Strauß", "García", "Nørgaard", "Ødegård", "O'Brien", "Dvořák", "Kowalczyk", "Smith",
    "Jones", "Nguyễn", "Çelik", "van der Berg", "Šimunović", "Петров", "Παπαδόπουλος", "Dubois",
    "Brontë", "Weiß", "Fitzgerald", "Ruiz-Peña", "Lindqvist",
)
_CJK_NAMES = ("山田 太郎", "王 芳", "김 민준", "佐藤 花子", "李 娜", "田中 健", "陳 美玲")
_EMOJI = ("🌻", "📰", "✨", "🎉", "☕")
# The first customers always carry the hardest characters, whatever the seed.
_SHOWCASE_NAMES = ("山田 太郎", "Jürgen Strauß", "Zoë Ødegård 🌻")
_DOMAINS = ("example.com", "mail.example.org", "post.example.de", "exemple.fr")
_PUBLICATIONS = (
    "The Daily Ledger", "Morning Chronicle", "Weekend Review", "Süddeutsche Rundschau",
    "Le Petit Journal", "Gazeta Poranna", "朝日ウィークリー", "El Heraldo de Ñuñoa",
    "Harper's Gazette", "The Économiste", "Gardening Monthly 🌱", "Καθημερινή Ενημέρωση",
)
_NOTES = (
    "Prefers delivery before 7am", "Leave at the back door", "Rechnung per Post, bitte",
    "Client très fidèle", "配達は午前中にお願いします", "VIP ⭐", "Call before delivery",
    "Gate code 4711", "Große Lieferung – Hof benutzen",
)
_STATUSES = (("delivered", "missed", "returned", "suspended"), (85, 92, 97, 100))
_COPIES = ((1, 2, 3, 5), (80, 94, 99, 100))
_METHODS = ("card", "direct_debit", "bank_transfer", "cash", "cheque", "paypal")
_REFERENCE_WORDS = ("INV", "Überweisung", "Zahlung Abo", "支払い", "Règlement", "Refund")

_MAX_UPDATE_ATTEMPTS = 100


class SampleError(Exception):
    """Bad input to the sample generator, or a file that is not a sample database."""


@dataclass(frozen=True)
class TableChanges:
    """Rows one `mutate` call inserted, updated and deleted in a table."""

    inserted: int
    updated: int
    deleted: int


# --- values -------------------------------------------------------------------------------


def _fixed(units: int, scale: int) -> str:
    """`units` of 10**-scale as exact decimal text: (-1230, 2) -> '-12.30'."""
    whole, fraction = divmod(abs(units), 10**scale)
    sign = "-" if units < 0 else ""
    return f"{sign}{whole}.{fraction:0{scale}d}"


def _decimal(rng: random.Random, low: float, high: float, scale: int) -> str:
    factor = 10**scale
    return _fixed(rng.randint(round(low * factor), round(high * factor)), scale)


def _day(rng: random.Random, low: date, high: date) -> date:
    return low + timedelta(days=rng.randint(0, max(0, (high - low).days)))


def _moment(rng: random.Random, day: date, first_hour: int = 0, last_hour: int = 23) -> str:
    """A microsecond-precise time on `day` between first_hour:00 and last_hour:59:59.999999."""
    start = datetime(day.year, day.month, day.day, first_hour)
    offset = rng.randrange((last_hour - first_hour + 1) * 3_600_000_000)
    return (start + timedelta(microseconds=offset)).isoformat(" ", "microseconds")


def _or_null(rng: random.Random, null_share: float, value: object) -> object:
    return None if rng.random() < null_share else value


def _pick(rng: random.Random, choices_and_cumulative_weights: tuple[tuple, tuple]) -> object:
    choices, cumulative_weights = choices_and_cumulative_weights
    return rng.choices(choices, cum_weights=cumulative_weights)[0]


def _full_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return rng.choice(_CJK_NAMES)
    name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    return f"{name} {rng.choice(_EMOJI)}" if roll > 0.98 else name


def _email(rng: random.Random, full_name: str, number: int) -> str:
    ascii_name = unicodedata.normalize("NFKD", full_name).encode("ascii", "ignore").decode()
    local = ".".join(part.lower() for part in re.findall(r"[A-Za-z]+", ascii_name)) or "reader"
    return f"{local}{number}@{rng.choice(_DOMAINS)}"


def _notes(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.35:
        return None
    if roll < 0.5:
        return ""
    return rng.choice(_NOTES)


def _route_code(rng: random.Random) -> str:
    return f"{rng.choice('NSEW')}{rng.randrange(100_000):05d}"


def _payment_reference(rng: random.Random) -> str:
    return f"{rng.choice(_REFERENCE_WORDS)} {rng.randint(2015, 2025)}-{rng.randrange(10**6):06d}"


# --- rows ---------------------------------------------------------------------------------


def _customer(rng: random.Random, customer_id: int, full_name: str | None = None) -> Row:
    full_name = full_name or _full_name(rng)
    return {
        "customer_id": customer_id,
        "full_name": full_name,
        "email": _or_null(rng, 0.1, _email(rng, full_name, customer_id)),
        "birth_date": _or_null(rng, 0.15, _day(rng, *_BIRTH_RANGE).isoformat()),
        "is_active": int(rng.random() < 0.85),
        "created_at": _moment(rng, _day(rng, _HISTORY_START, _REFERENCE)),
        "credit_limit": _or_null(rng, 0.2, _decimal(rng, 100, 50_000, 2)),
    }


def _account(rng: random.Random, account_id: int, customer_id: int, since: date) -> Row:
    opened_on = _day(rng, since, _REFERENCE)
    closed_on = _day(rng, opened_on, _REFERENCE).isoformat()
    return {
        "account_id": account_id,
        "customer_id": customer_id,
        "account_no": f"MX-{account_id:08d}",
        "balance": _decimal(rng, -2_500, 10_000, 2),
        "opened_on": opened_on.isoformat(),
        "closed_on": _or_null(rng, 0.85, closed_on),
        "notes": _notes(rng),
    }


def _subscription(rng: random.Random, subscription_id: int, account_id: int, since: date) -> Row:
    start = _day(rng, since, _REFERENCE)
    end = start + timedelta(days=rng.randint(28, 730))
    return {
        "subscription_id": subscription_id,
        "account_id": account_id,
        "publication": rng.choice(_PUBLICATIONS),
        "start_date": start.isoformat(),
        "end_date": _or_null(rng, 0.6, end.isoformat()),
        "weekly_price": _decimal(rng, 1.5, 24.99, 2),
        "auto_renew": int(rng.random() < 0.7),
        "discount_rate": _or_null(rng, 0.5, _decimal(rng, 0, 0.35, 4)),
    }


def _delivery(rng: random.Random, subscription_id: int, delivery_date: date) -> Row:
    status = _pick(rng, _STATUSES)
    return {
        "subscription_id": subscription_id,
        "delivery_date": delivery_date.isoformat(),
        "copies": _pick(rng, _COPIES),
        "status": status,
        "delivered_at": _moment(rng, delivery_date, 3, 7) if status == "delivered" else None,
        "route_code": _or_null(rng, 0.1, _route_code(rng)),
    }


def _payment(rng: random.Random, account_id: int, payment_no: int, since: date) -> Row:
    refund = rng.random() < 0.03
    return {
        "account_id": account_id,
        "payment_no": payment_no,
        "amount": _decimal(rng, -80, -1, 2) if refund else _decimal(rng, 5, 600, 2),
        "paid_at": _moment(rng, _day(rng, since, _REFERENCE)),
        "method": rng.choice(_METHODS),
        "reference": _or_null(rng, 0.3, _payment_reference(rng)),
        "fee": _or_null(rng, 0.4, round(rng.uniform(0.05, 3.5), 2)),
    }


# Fresh values for updates, per updatable column. Reference columns (accounts.customer_id,
# subscriptions.account_id) are left alone so updates never orphan a row.
_FRESH: dict[str, dict[str, Callable[[random.Random], object]]] = {
    "customers": {
        "full_name": _full_name,
        "email": lambda rng: _email(rng, _full_name(rng), rng.randrange(10**6)),
        "birth_date": lambda rng: _day(rng, *_BIRTH_RANGE).isoformat(),
        "is_active": lambda rng: rng.randint(0, 1),
        "created_at": lambda rng: _moment(rng, _day(rng, _HISTORY_START, _REFERENCE)),
        "credit_limit": lambda rng: _decimal(rng, 100, 50_000, 2),
    },
    "accounts": {
        "account_no": lambda rng: f"MX-{rng.randrange(10**8):08d}",
        "balance": lambda rng: _decimal(rng, -2_500, 10_000, 2),
        "opened_on": lambda rng: _day(rng, _HISTORY_START, _REFERENCE).isoformat(),
        "closed_on": lambda rng: _day(rng, _HISTORY_START, _REFERENCE).isoformat(),
        "notes": _notes,
    },
    "subscriptions": {
        "publication": lambda rng: rng.choice(_PUBLICATIONS),
        "start_date": lambda rng: _day(rng, _HISTORY_START, _REFERENCE).isoformat(),
        "end_date": lambda rng: _day(rng, _HISTORY_START, _REFERENCE).isoformat(),
        "weekly_price": lambda rng: _decimal(rng, 1.5, 24.99, 2),
        "auto_renew": lambda rng: rng.randint(0, 1),
        "discount_rate": lambda rng: _decimal(rng, 0, 0.35, 4),
    },
    "deliveries": {
        "copies": lambda rng: rng.randint(1, 6),
        "status": lambda rng: rng.choice(_STATUSES[0]),
        "delivered_at": lambda rng: _moment(rng, _day(rng, _RECENT_START, _REFERENCE)),
        "route_code": _route_code,
    },
    "payments": {
        "amount": lambda rng: _decimal(rng, -80, 600, 2),
        "paid_at": lambda rng: _moment(rng, _day(rng, _HISTORY_START, _REFERENCE)),
        "method": lambda rng: rng.choice(_METHODS),
        "reference": _payment_reference,
        "fee": lambda rng: round(rng.uniform(0.05, 3.5), 2),
    },
}


# --- schema and SQL -----------------------------------------------------------------------


def _create_table(table: str) -> str:
    columns = [f"    {name} {declared}" for name, declared in _SCHEMA[table].items()]
    columns.append(f"    PRIMARY KEY ({', '.join(TABLE_KEYS[table])})")
    return f"CREATE TABLE {table} (\n" + ",\n".join(columns) + "\n);"


@cache
def _nullable_columns(table: str) -> tuple[str, ...]:
    return tuple(name for name, declared in _SCHEMA[table].items() if "NOT NULL" not in declared)


@cache
def _insert_sql(table: str) -> str:
    names = list(_SCHEMA[table])
    quoted = ", ".join(f'"{name}"' for name in names)
    params = ", ".join(f":{name}" for name in names)
    return f'INSERT INTO "{table}" ({quoted}) VALUES ({params})'


def _count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]


# --- create -------------------------------------------------------------------------------


def customer_count(size: str | int) -> int:
    """Customers of a sample of `size` (a SIZES name or a positive count, also as digits); SampleError otherwise."""
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    if isinstance(size, str):
        if size not in SIZES:
            expected = ", ".join(SIZES)
            raise SampleError(f"unknown size {size!r}: expected one of {expected} or a positive integer")
        return SIZES[size]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SampleError(f"size must be one of {', '.join(SIZES)} or a positive integer, not {size!r}")
    return size


def _clear_path(path: Path) -> None:
    if not path.parent.is_dir():
        raise SampleError(f"directory {path.parent} does not exist")
    if path.is_dir():
        raise SampleError(f"{path} is a directory, not a database file")
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _sample_rows(rng: random.Random, customers: int) -> Iterator[tuple[str, Row]]:
    """Every row of the sample, parents before their children, one customer at a time."""
    account_ids, subscription_ids = itertools.count(1), itertools.count(1)
    for customer_id in range(1, customers + 1):
        customer = _customer(rng, customer_id, _showcase_name(customer_id))
        yield "customers", customer
        since = date.fromisoformat(str(customer["created_at"])[:10])
        for _ in range(_pick(rng, _ACCOUNTS_PER_CUSTOMER)):
            yield from _account_rows(rng, next(account_ids), customer_id, since, subscription_ids)


def _account_rows(
    rng: random.Random, account_id: int, customer_id: int, since: date, subscription_ids: Iterator[int]
) -> Iterator[tuple[str, Row]]:
    """An account, then its subscriptions each followed by its weekly deliveries, then its payments."""
    account = _account(rng, account_id, customer_id, since)
    yield "accounts", account
    opened_on = date.fromisoformat(str(account["opened_on"]))
    for _ in range(_pick(rng, _SUBSCRIPTIONS_PER_ACCOUNT)):
        subscription = _subscription(rng, next(subscription_ids), account_id, opened_on)
        yield "subscriptions", subscription
        start = date.fromisoformat(str(subscription["start_date"]))
        for week in range(rng.randint(*_DELIVERIES_PER_SUBSCRIPTION)):
            day = start + timedelta(weeks=week)
            yield "deliveries", _delivery(rng, int(subscription["subscription_id"]), day)
    for payment_no in range(1, rng.randint(*_PAYMENTS_PER_ACCOUNT) + 1):
        yield "payments", _payment(rng, account_id, payment_no, opened_on)


def _showcase_name(customer_id: int) -> str | None:
    return _SHOWCASE_NAMES[customer_id - 1] if customer_id <= len(_SHOWCASE_NAMES) else None


def _with_edge_cases(rows: Iterable[tuple[str, Row]]) -> Iterator[tuple[str, Row]]:
    """Guarantee what a small random sample could miss, whatever the seed: each table's first row
    has every nullable column NULL and accounts.notes holds both NULL and ''."""
    ordinals = dict.fromkeys(TABLE_KEYS, 0)
    for table, row in rows:
        ordinals[table] += 1
        ordinal = ordinals[table]
        if ordinal == 1:
            row.update(dict.fromkeys(_nullable_columns(table)))
            if table == "deliveries":
                row["status"] = "suspended"  # consistent with its NULL delivered_at
        if table == "accounts" and ordinal == 2:
            row["notes"] = ""
        yield table, row


def _write(conn: sqlite3.Connection, rows: Iterable[tuple[str, Row]]) -> dict[str, int]:
    """Insert rows in per-table batches of BATCH_ROWS; returns the rows written per table."""
    batches: dict[str, list[Row]] = {table: [] for table in TABLE_KEYS}
    counts = dict.fromkeys(TABLE_KEYS, 0)
    for table, row in rows:
        batch = batches[table]
        batch.append(row)
        counts[table] += 1
        if len(batch) >= BATCH_ROWS:
            conn.executemany(_insert_sql(table), batch)
            batch.clear()
    for table, batch in batches.items():
        if batch:
            conn.executemany(_insert_sql(table), batch)
    return counts


def create_sample(path: Path, size: str | int = "small", seed: int = 7) -> dict[str, int]:
    """(Re)create the sample database at `path` for `size` (a SIZES name or a customer count),
    filled deterministically from `seed`; returns the row count per table."""
    path = Path(path)
    customers = customer_count(size)
    _clear_path(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # No journal and no fsync: a failed build is deleted, never repaired.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript("\n".join(_create_table(table) for table in _SCHEMA))
        conn.execute("BEGIN")
        counts = _write(conn, _with_edge_cases(_sample_rows(random.Random(seed), customers)))
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        path.unlink(missing_ok=True)
        raise
    conn.close()
    return counts


# --- mutate -------------------------------------------------------------------------------


def _check_fraction(fraction: float) -> None:
    valid = isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1
    if not valid:
        raise SampleError(f"fraction must be a number in (0, 1], not {fraction!r}")


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    for table, columns in _SCHEMA.items():
        found = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        if found != list(columns):
            raise SampleError(f"{path} is not a sample Matrix database: table {table} missing or different")


def _open_sample(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise SampleError(f"{path} does not exist or is not a file")
    # mode=rw: never create an empty database where a sample was expected.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None)
    try:
        _check_schema(conn, path)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise SampleError(f"{path} is not a SQLite database: {error}") from error
    except SampleError:
        conn.close()
        raise
    return conn


def _plan(rows: int, fraction: float) -> TableChanges:
    """How many rows to change: ~fraction/2 updates, ~fraction/4 inserts and deletes, at least
    one of each; updated and deleted rows are distinct, so together they fit in the table."""
    inserted = max(1, round(rows * fraction / 4))
    if rows == 0:
        return TableChanges(inserted=inserted, updated=0, deleted=0)
    deleted = min(rows, max(1, round(rows * fraction / 4)))
    updated = min(rows - deleted, max(1, round(rows * fraction / 2)))
    return TableChanges(inserted=inserted, updated=updated, deleted=deleted)


def _sample_rowids(conn: sqlite3.Connection, table: str, count: int, rng: random.Random) -> list[int]:
    """`count` distinct rowids drawn uniformly, in random order. SQLite itself skips the rows
    between chosen offsets, so only the chosen rowids ever reach Python."""
    offsets = rng.sample(range(_count(conn, table)), count)
    sql = f'SELECT rowid FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT 1 OFFSET ?'
    rowid_at: dict[int, int] = {}
    previous_offset, previous_rowid = -1, -(2**63)
    for offset in sorted(offsets):
        (rowid,) = conn.execute(sql, (previous_rowid, offset - previous_offset - 1)).fetchone()
        rowid_at[offset] = rowid
        previous_offset, previous_rowid = offset, rowid
    return [rowid_at[offset] for offset in offsets]


def _random_value(conn: sqlite3.Connection, table: str, column: str, rng: random.Random) -> int | None:
    """`column` of a random existing row (the first at or after a random rowid), None if empty."""
    # Two subqueries: SQLite answers a lone MIN or MAX from the index, MIN and MAX together by a scan.
    bounds = f'SELECT (SELECT MIN(rowid) FROM "{table}"), (SELECT MAX(rowid) FROM "{table}")'
    low, high = conn.execute(bounds).fetchone()
    if low is None:
        return None
    sql = f'SELECT "{column}" FROM "{table}" WHERE rowid >= ? ORDER BY rowid LIMIT 1'
    return conn.execute(sql, (rng.randint(low, high),)).fetchone()[0]


def _next_number(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> int:
    """One above the MAX that `sql` selects, 1 when there is none. `sql` is a bare MAX, without
    COALESCE, so SQLite can answer it from the index."""
    highest = conn.execute(sql, params).fetchone()[0]
    return 1 if highest is None else highest + 1


def _new_customer(conn: sqlite3.Connection, rng: random.Random) -> Row | None:
    customer_id = _next_number(conn, "SELECT MAX(customer_id) FROM customers")
    return _customer(rng, customer_id)


def _new_account(conn: sqlite3.Connection, rng: random.Random) -> Row | None:
    customer_id = _random_value(conn, "customers", "customer_id", rng)
    if customer_id is None:
        return None
    account_id = _next_number(conn, "SELECT MAX(account_id) FROM accounts")
    return _account(rng, account_id, customer_id, _RECENT_START)


def _new_subscription(conn: sqlite3.Connection, rng: random.Random) -> Row | None:
    account_id = _random_value(conn, "accounts", "account_id", rng)
    if account_id is None:
        return None
    subscription_id = _next_number(conn, "SELECT MAX(subscription_id) FROM subscriptions")
    return _subscription(rng, subscription_id, account_id, _RECENT_START)


def _new_delivery(conn: sqlite3.Connection, rng: random.Random) -> Row | None:
    subscription_id = _random_value(conn, "subscriptions", "subscription_id", rng)
    if subscription_id is None:
        return None
    sql = "SELECT MAX(delivery_date) FROM deliveries WHERE subscription_id = ?"
    last = conn.execute(sql, (subscription_id,)).fetchone()[0]
    day = date.fromisoformat(last) + timedelta(weeks=1) if last else _day(rng, _RECENT_START, _REFERENCE)
    return _delivery(rng, subscription_id, day)


def _new_payment(conn: sqlite3.Connection, rng: random.Random) -> Row | None:
    account_id = _random_value(conn, "accounts", "account_id", rng)
    if account_id is None:
        return None
    sql = "SELECT MAX(payment_no) FROM payments WHERE account_id = ?"
    return _payment(rng, account_id, _next_number(conn, sql, (account_id,)), _RECENT_START)


# A new row with a key that does not exist yet (above the current maximum), or None when the
# parent table is empty.
_NEW_ROW: dict[str, Callable[[sqlite3.Connection, random.Random], Row | None]] = {
    "customers": _new_customer,
    "accounts": _new_account,
    "subscriptions": _new_subscription,
    "deliveries": _new_delivery,
    "payments": _new_payment,
}


def _insert_rows(conn: sqlite3.Connection, table: str, count: int, rng: random.Random) -> int:
    inserted = 0
    for _ in range(count):
        row = _NEW_ROW[table](conn, rng)
        if row is None:
            break
        conn.execute(_insert_sql(table), row)
        inserted += 1
    return inserted


def _change_value(
    conn: sqlite3.Connection, table: str, column: str, rowid: int, rng: random.Random
) -> None:
    """Give one column a value that really differs, compared by SQLite itself (so '12.30' equals a
    stored 12.3): NULL now and then for nullable columns, a fresh value otherwise."""
    nullable = column in _nullable_columns(table)
    fresh = _FRESH[table][column]
    sql = f'UPDATE "{table}" SET "{column}" = :value WHERE rowid = :rowid AND "{column}" IS NOT :value'
    for _ in range(_MAX_UPDATE_ATTEMPTS):
        value = None if nullable and rng.random() < 0.3 else fresh(rng)
        if conn.execute(sql, {"value": value, "rowid": rowid}).rowcount == 1:
            return
    raise RuntimeError(f"no differing value found for {table}.{column} at rowid {rowid}")


def _update_rows(conn: sqlite3.Connection, table: str, rowids: list[int], rng: random.Random) -> int:
    columns = list(_FRESH[table])
    for rowid in rowids:
        for column in rng.sample(columns, rng.randint(1, min(3, len(columns)))):
            _change_value(conn, table, column, rowid, rng)
    return len(rowids)


def _delete_rows(conn: sqlite3.Connection, table: str, rowids: list[int]) -> int:
    if not rowids:
        return 0
    sql = f'DELETE FROM "{table}" WHERE rowid = ?'
    return conn.executemany(sql, [(rowid,) for rowid in rowids]).rowcount


def _mutate_table(
    conn: sqlite3.Connection, table: str, fraction: float, rng: random.Random
) -> TableChanges:
    plan = _plan(_count(conn, table), fraction)
    # Victims are drawn before inserting (so no new row is also updated) and deletes run last
    # (so a new key, above the current maximum, can never reuse a key deleted in this batch).
    victims = _sample_rowids(conn, table, plan.updated + plan.deleted, rng)
    inserted = _insert_rows(conn, table, plan.inserted, rng)
    updated = _update_rows(conn, table, victims[: plan.updated], rng)
    deleted = _delete_rows(conn, table, victims[plan.updated :])
    return TableChanges(inserted=inserted, updated=updated, deleted=deleted)


def mutate(path: Path, fraction: float = 0.05, seed: int | None = None) -> dict[str, TableChanges]:
    """Apply a random batch of inserts, updates and deletes to every table of the sample at
    `path` in one transaction; returns the exact changes per table. Deletes do not cascade,
    so children of a deleted parent remain (no foreign keys are declared)."""
    path = Path(path)
    _check_fraction(fraction)
    rng = random.Random(seed)
    with contextlib.closing(_open_sample(path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            changes = {table: _mutate_table(conn, table, fraction, rng) for table in TABLE_KEYS}
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return changes
