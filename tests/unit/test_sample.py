"""The sample Matrix database: deterministic content, reflected types, and exact mutation counts."""
from __future__ import annotations

import datetime as dt
import sqlite3
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import types as sqltypes

from matrix_sync import sample
from matrix_sync.sample import SIZES, TABLE_KEYS, SampleError, TableChanges, create_sample, mutate

Rows = dict[tuple, tuple]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "matrix.db"
    create_sample(path, "small", seed=7)
    return path


def rows(path: Path, table: str) -> Rows:
    """Key -> whole row, as SQLite stores it."""
    with sqlite3.connect(path) as conn:
        names = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        positions = [names.index(key) for key in TABLE_KEYS[table]]
        return {tuple(row[p] for p in positions): row for row in conn.execute(f'SELECT * FROM "{table}"')}


def snapshot(path: Path) -> dict[str, Rows]:
    return {table: rows(path, table) for table in TABLE_KEYS}


def column_values(path: Path, table: str, column: str) -> list[object]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute(f'SELECT "{column}" FROM "{table}"')]


def differences(before: Rows, after: Rows) -> TableChanges:
    common = before.keys() & after.keys()
    return TableChanges(
        inserted=len(after.keys() - before.keys()),
        updated=sum(before[key] != after[key] for key in common),
        deleted=len(before.keys() - after.keys()),
    )


# --- create ---------------------------------------------------------------------------------


def test_same_seed_gives_same_content_and_another_seed_does_not(tmp_path: Path) -> None:
    create_sample(tmp_path / "a.db", "tiny", seed=11)
    create_sample(tmp_path / "b.db", "tiny", seed=11)
    create_sample(tmp_path / "c.db", "tiny", seed=12)
    assert snapshot(tmp_path / "a.db") == snapshot(tmp_path / "b.db")
    assert snapshot(tmp_path / "a.db") != snapshot(tmp_path / "c.db")


def test_returned_counts_are_the_real_counts_and_scale_from_customers(small_db: Path) -> None:
    counts = create_sample(small_db.with_name("again.db"), "small", seed=7)
    assert counts == {table: len(rows(small_db, table)) for table in TABLE_KEYS}
    assert counts["customers"] == SIZES["small"] == 200
    assert 1.15 < counts["accounts"] / counts["customers"] < 1.45
    assert 1.3 < counts["subscriptions"] / counts["accounts"] < 1.7
    assert 7 < counts["deliveries"] / counts["subscriptions"] < 9
    assert 3.5 < counts["payments"] / counts["accounts"] < 4.5


def test_size_may_be_a_customer_count(tmp_path: Path) -> None:
    assert create_sample(tmp_path / "n.db", 7)["customers"] == 7


def test_existing_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "matrix.db"
    path.write_text("not a database")
    create_sample(path, "tiny")
    assert len(rows(path, "customers")) == SIZES["tiny"]


@pytest.mark.parametrize("table", TABLE_KEYS)
def test_keys_are_unique_and_never_null(small_db: Path, table: str) -> None:
    keys = ", ".join(TABLE_KEYS[table])
    with sqlite3.connect(small_db) as conn:
        duplicates = conn.execute(
            f"SELECT {keys} FROM {table} GROUP BY {keys} HAVING COUNT(*) > 1"
        ).fetchall()
        nulls = conn.execute(
            f"SELECT COUNT(*) FROM {table} WHERE " + " OR ".join(f"{k} IS NULL" for k in TABLE_KEYS[table])
        ).fetchone()[0]
    assert duplicates == [] and nulls == 0


EXPECTED_TYPES: dict[str, dict[str, tuple[type, dict[str, object]]]] = {
    "customers": {
        "customer_id": (sqltypes.INTEGER, {}),
        "full_name": (sqltypes.NVARCHAR, {"length": 200}),
        "email": (sqltypes.VARCHAR, {"length": 320}),
        "birth_date": (sqltypes.DATE, {}),
        "is_active": (sqltypes.BOOLEAN, {}),
        "created_at": (sqltypes.DATETIME, {}),
        "credit_limit": (sqltypes.Numeric, {"precision": 12, "scale": 2}),
    },
    "accounts": {
        "account_id": (sqltypes.INTEGER, {}),
        "customer_id": (sqltypes.INTEGER, {}),
        "account_no": (sqltypes.VARCHAR, {"length": 20}),
        "balance": (sqltypes.Numeric, {"precision": 14, "scale": 2}),
        "opened_on": (sqltypes.DATE, {}),
        "closed_on": (sqltypes.DATE, {}),
        "notes": (sqltypes.TEXT, {}),
    },
    "subscriptions": {
        "subscription_id": (sqltypes.INTEGER, {}),
        "account_id": (sqltypes.INTEGER, {}),
        "publication": (sqltypes.NVARCHAR, {"length": 100}),
        "start_date": (sqltypes.DATE, {}),
        "end_date": (sqltypes.DATE, {}),
        "weekly_price": (sqltypes.Numeric, {"precision": 8, "scale": 2}),
        "auto_renew": (sqltypes.BOOLEAN, {}),
        "discount_rate": (sqltypes.Numeric, {"precision": 5, "scale": 4}),
    },
    "deliveries": {
        "subscription_id": (sqltypes.INTEGER, {}),
        "delivery_date": (sqltypes.DATE, {}),
        "copies": (sqltypes.SMALLINT, {}),
        "status": (sqltypes.VARCHAR, {"length": 20}),
        "delivered_at": (sqltypes.DATETIME, {}),
        "route_code": (sqltypes.CHAR, {"length": 6}),
    },
    "payments": {
        "account_id": (sqltypes.INTEGER, {}),
        "payment_no": (sqltypes.INTEGER, {}),
        "amount": (sqltypes.Numeric, {"precision": 12, "scale": 2}),
        "paid_at": (sqltypes.DATETIME, {}),
        "method": (sqltypes.VARCHAR, {"length": 20}),
        "reference": (sqltypes.NVARCHAR, {"length": 60}),
        "fee": (sqltypes.FLOAT, {}),
    },
}

NOT_NULL = {
    "customers": {"customer_id", "full_name", "is_active", "created_at"},
    "accounts": {"account_id", "customer_id", "account_no", "balance", "opened_on"},
    "subscriptions": {"subscription_id", "account_id", "publication", "start_date", "weekly_price", "auto_renew"},
    "deliveries": {"subscription_id", "delivery_date", "copies", "status"},
    "payments": {"account_id", "payment_no", "amount", "paid_at", "method"},
}


@pytest.mark.parametrize("table", TABLE_KEYS)
def test_reflection_sees_declared_types_nullability_and_keys(small_db: Path, table: str) -> None:
    inspector = sa.inspect(sa.create_engine(f"sqlite:///{small_db}"))
    columns = inspector.get_columns(table)
    assert [c["name"] for c in columns] == list(EXPECTED_TYPES[table])
    for column in columns:
        expected_class, attributes = EXPECTED_TYPES[table][column["name"]]
        assert isinstance(column["type"], expected_class), column
        for attribute, value in attributes.items():
            assert getattr(column["type"], attribute) == value, column
        assert column["nullable"] == (column["name"] not in NOT_NULL[table]), column
    assert inspector.get_pk_constraint(table)["constrained_columns"] == TABLE_KEYS[table]


def test_values_read_back_through_sqlalchemy_with_their_types(small_db: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{small_db}")
    tables = {name: sa.Table(name, sa.MetaData(), autoload_with=engine) for name in TABLE_KEYS}
    with engine.connect() as conn:
        customers = conn.execute(sa.select(tables["customers"])).mappings().all()
        subscriptions = conn.execute(sa.select(tables["subscriptions"])).mappings().all()
        accounts = conn.execute(sa.select(tables["accounts"])).mappings().all()
    credit = [c["credit_limit"] for c in customers if c["credit_limit"] is not None]
    assert credit and all(isinstance(v, Decimal) and v.as_tuple().exponent == -2 for v in credit)
    rates = [s["discount_rate"] for s in subscriptions if s["discount_rate"] is not None]
    assert rates and all(isinstance(v, Decimal) and v.as_tuple().exponent == -4 for v in rates)
    assert any(a["balance"] < 0 for a in accounts) and any(a["balance"] > 0 for a in accounts)
    assert all(type(c["created_at"]) is dt.datetime for c in customers)
    assert any(c["created_at"].microsecond for c in customers)
    assert all(type(c["birth_date"]) is dt.date for c in customers if c["birth_date"] is not None)
    assert {c["is_active"] for c in customers} == {True, False}


def test_notes_hold_both_null_and_empty_string(tmp_path: Path) -> None:
    create_sample(tmp_path / "tiny.db", "tiny", seed=1)
    notes = column_values(tmp_path / "tiny.db", "accounts", "notes")
    assert None in notes and "" in notes and any(notes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_nullable_column_has_nulls_and_values_even_when_tiny(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "tiny.db"
    create_sample(path, "tiny", seed=seed)
    for table, types in EXPECTED_TYPES.items():
        for column in types.keys() - NOT_NULL[table]:
            values = column_values(path, table, column)
            assert None in values and any(v is not None for v in values), (table, column)


def test_text_is_unicode(small_db: Path) -> None:
    names = column_values(small_db, "customers", "full_name")
    assert any("ß" in name for name in names)
    assert any("\u4e00" <= char <= "\u9fff" for name in names for char in name)
    assert any(ord(char) > 0xFFFF for name in names for char in name)
    assert any(not name.isascii() for name in column_values(small_db, "subscriptions", "publication"))


def test_rows_are_written_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample, "BATCH_ROWS", 200)

    def peak_bytes(customers: int) -> int:
        tracemalloc.start()
        try:
            create_sample(tmp_path / f"{customers}.db", customers)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, four_times_larger = peak_bytes(200), peak_bytes(800)
    assert four_times_larger < small * 1.5


# --- mutate ---------------------------------------------------------------------------------


def test_mutate_reports_exactly_what_changed_twice_in_a_row(tmp_path: Path) -> None:
    path = tmp_path / "matrix.db"
    create_sample(path, "small", seed=3)
    for seed in (101, 202):
        before = snapshot(path)
        changes = mutate(path, fraction=0.1, seed=seed)
        after = snapshot(path)
        assert changes == {table: differences(before[table], after[table]) for table in TABLE_KEYS}
        for table, change in changes.items():
            assert change.inserted >= 1 and change.updated >= 1 and change.deleted >= 1, table


def test_mutate_counts_follow_the_fraction(tmp_path: Path) -> None:
    path = tmp_path / "matrix.db"
    counts = create_sample(path, "small", seed=3)
    changes = mutate(path, fraction=0.2, seed=5)
    for table, change in changes.items():
        assert change.updated == round(counts[table] * 0.2 / 2)
        assert change.inserted == change.deleted == round(counts[table] * 0.2 / 4)


def test_mutate_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    for name in ("a.db", "b.db"):
        create_sample(tmp_path / name, "tiny", seed=4)
        mutate(tmp_path / name, fraction=0.3, seed=9)
    assert snapshot(tmp_path / "a.db") == snapshot(tmp_path / "b.db")


def test_mutate_whole_fraction_on_tiny_table(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    create_sample(path, 1, seed=4)
    before = snapshot(path)
    changes = mutate(path, fraction=1.0, seed=1)
    after = snapshot(path)
    assert changes == {table: differences(before[table], after[table]) for table in TABLE_KEYS}
    assert changes["customers"] == TableChanges(inserted=1, updated=0, deleted=1)


def null_transitions(before: Rows, after: Rows) -> tuple[int, int]:
    """(values that became NULL, NULLs that became values) among rows present on both sides."""
    to_null = from_null = 0
    for key in before.keys() & after.keys():
        for old, new in zip(before[key], after[key]):
            to_null += old is not None and new is None
            from_null += old is None and new is not None
    return to_null, from_null


def test_mutate_sets_nulls_clears_nulls_and_writes_unicode(tmp_path: Path) -> None:
    path = tmp_path / "matrix.db"
    create_sample(path, "small", seed=3)
    before = snapshot(path)
    mutate(path, fraction=0.5, seed=8)
    after = snapshot(path)
    for table in ("customers", "accounts", "payments"):
        to_null, from_null = null_transitions(before[table], after[table])
        assert to_null and from_null, table
    updated_names = {
        row[1] for key, row in after["customers"].items()
        if key in before["customers"] and before["customers"][key][1] != row[1]
    }
    assert any(not name.isascii() for name in updated_names)


def test_inserted_children_reference_existing_parents(tmp_path: Path) -> None:
    path = tmp_path / "matrix.db"
    create_sample(path, "tiny", seed=3)
    before = snapshot(path)
    mutate(path, fraction=0.5, seed=2)
    after = snapshot(path)
    customers = {key[0] for key in after["customers"]}
    new_accounts = [row for key, row in after["accounts"].items() if key not in before["accounts"]]
    assert new_accounts and all(row[1] in customers for row in new_accounts)
    subscriptions = {key[0] for key in after["subscriptions"]}
    new_deliveries = [key for key in after["deliveries"] if key not in before["deliveries"]]
    assert new_deliveries and all(key[0] in subscriptions for key in new_deliveries)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["huge", "", 0, -5, True, 2.5, None])
def test_bad_size_is_refused(tmp_path: Path, size: object) -> None:
    with pytest.raises(SampleError, match="size"):
        create_sample(tmp_path / "x.db", size)  # type: ignore[arg-type]


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match="does not exist"):
        create_sample(tmp_path / "nowhere" / "x.db", "tiny")


def test_directory_as_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match="directory"):
        create_sample(tmp_path, "tiny")


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_bad_fraction_is_refused(small_db: Path, fraction: object) -> None:
    with pytest.raises(SampleError, match="fraction"):
        mutate(small_db, fraction=fraction)  # type: ignore[arg-type]


def test_mutate_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SampleError, match="does not exist"):
        mutate(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_mutate_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "text.db"
    path.write_text("hello, this is not SQLite " * 100)
    with pytest.raises(SampleError, match="not a SQLite database"):
        mutate(path)


def test_mutate_refuses_another_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(SampleError, match="not a sample"):
        mutate(path)
