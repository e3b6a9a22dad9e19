"""Applying a full snapshot of a keyless table by multiplicity: rows are matched by `_row_hash`
and identical rows by their number of copies.

For every row hash whose number of copies differs between the snapshot (staging) and the table,
every copy is deleted from the table and the snapshot's copies are inserted; hashes held the same
number of times on both sides are not touched. So deleting one of three identical rows deletes 3
and inserts 2, and the table ends holding exactly the snapshot's multiset of rows. The counts the
ledger records are the net differences: copies the table gains (inserted) and loses (deleted); an
updated row is one of each, since without a key nothing says which old row it was.
"""
from __future__ import annotations

from shared.identifiers import quote_bigquery as q
from shared.schema import HASH_COLUMNS, ROW_HASH_COLUMN, TableSchema


def multiplicity_sql(target: str, staging: str) -> str:
    """Copies per row hash in the snapshot (`staged`) and in the table (`held`), for every hash
    either side holds."""
    row_hash = q(ROW_HASH_COLUMN)
    staged, held = (f"(SELECT {row_hash} AS h, COUNT(*) AS n FROM {table} GROUP BY {row_hash})"
                    for table in (staging, target))
    return ("SELECT COALESCE(SC.h, TC.h) AS h, IFNULL(SC.n, 0) AS staged, IFNULL(TC.n, 0) AS held "
            f"FROM {staged} AS SC FULL OUTER JOIN {held} AS TC ON SC.h = TC.h")


def count_queries(target: str, staging: str) -> dict[str, str]:
    """Copies the load adds and removes, net, from the state before it; nothing is an update."""
    counts = f"FROM ({multiplicity_sql(target, staging)})"
    return {
        "inserted": f"SELECT IFNULL(SUM(GREATEST(staged - held, 0)), 0) {counts}",
        "deleted": f"SELECT IFNULL(SUM(GREATEST(held - staged, 0)), 0) {counts}",
    }


def delete_statement(target: str, staging: str, *, rewrite: bool = False) -> str:
    """Every copy of each row hash whose number of copies differs, and every row without a row hash
    (written by hand: no snapshot holds it, and IN never matches a NULL). With `rewrite` (stored
    hashes cover the columns in another order than the snapshot's), every row."""
    if rewrite:
        return f"DELETE FROM {target} WHERE TRUE"
    row_hash = q(ROW_HASH_COLUMN)
    return (f"DELETE FROM {target} AS T WHERE T.{row_hash} IS NULL OR T.{row_hash} IN "
            f"(SELECT h FROM ({multiplicity_sql(target, staging)}) WHERE staged != held)")


def insert_statement(schema: TableSchema, target: str, staging: str) -> str:
    """After `delete_statement`: the snapshot's copies of every hash the table no longer holds,
    which are exactly the new hashes and those whose copies differed."""
    columns = ", ".join(q(c) for c in [c.bq_name for c in schema.columns] + list(HASH_COLUMNS))
    row_hash = q(ROW_HASH_COLUMN)
    return (f"INSERT INTO {target} ({columns})\n"
            f"SELECT {columns} FROM {staging} AS S "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} AS T WHERE T.{row_hash} = S.{row_hash})")
