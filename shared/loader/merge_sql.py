"""The load transaction, generated from the schema: ledger guard, counts, one MERGE (for a delta
over its rows and its deleted keys; for a keyless table DELETE and INSERT by multiplicity), ledger
row and a row-count check, all or nothing.

Identifiers are quoted by `shared.identifiers.quote_bigquery` only; values become script
variables with literals rendered by `shared.sql_literals` (the emulator binds no parameters in
scripts). The counts are computed before the MERGE because BigQuery reports no per-branch counts
for a script (and the emulator none at all).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared import sql_literals as lit
from shared.identifiers import quote_bigquery as q
from shared.ledger import APPLIED, DUPLICATE, STALE, applied_since_truncate
from shared.loader import keyless_sql
from shared.schema import HASH_COLUMNS, KEY_HASH_COLUMN, ROW_HASH_COLUMN, TableSchema

BASE_MISSING = "base_missing"
BASE_SUPERSEDED = "base_superseded"
DIVERGED = "diverged"
DUPLICATE_KEYS = "duplicate_keys"
OUTCOMES = (APPLIED, DUPLICATE, STALE, BASE_MISSING, BASE_SUPERSEDED, DIVERGED, DUPLICATE_KEYS)


@dataclass(frozen=True)
class LoadValues:
    """What the ledger row records about the snapshot being applied."""

    table_id: str
    source_table: str
    run_id: str
    sequence: int
    mode: str
    manifest_uri: str
    source_rows: int
    bytes: int
    extracted_at: dt.datetime
    base_run_id: str | None = None
    key_columns: str = ""
    hashed_columns: str | None = None
    message: str | None = None

    def declarations(self) -> str:
        base = _string_or_null(self.base_run_id)
        return "\n".join([
            lit.declare("v_table_id", "STRING", lit.string(self.table_id)),
            lit.declare("v_source_table", "STRING", lit.string(self.source_table)),
            lit.declare("v_run_id", "STRING", lit.string(self.run_id)),
            lit.declare("v_sequence", "INT64", lit.integer(self.sequence)),
            lit.declare("v_mode", "STRING", lit.string(self.mode)),
            lit.declare("v_manifest_uri", "STRING", lit.string(self.manifest_uri)),
            lit.declare("v_source_rows", "INT64", lit.integer(self.source_rows)),
            lit.declare("v_bytes", "INT64", lit.integer(self.bytes)),
            lit.declare("v_extracted_at", "TIMESTAMP", lit.timestamp(self.extracted_at)),
            lit.declare("v_base_run_id", "STRING", base),
            lit.declare("v_key_columns", "STRING", lit.string(self.key_columns)),
            lit.declare("v_hashed_columns", "STRING", _string_or_null(self.hashed_columns)),
            lit.declare("v_message", "STRING", _string_or_null(self.message)),
        ])


def _string_or_null(value: str | None) -> str:
    return "NULL" if value is None else lit.string(value)


@dataclass(frozen=True)
class Tables:
    """Quoted names of the tables one load touches; `deleted` only for a delta."""

    target: str
    staging: str
    ledger: str
    deleted: str | None = None


def _changed(rewrite: bool) -> str:
    """Which matched rows a load writes: those whose row hash changed, or every one when the stored
    hashes cover the columns in another order than the snapshot's (two columns that swapped names
    hash alike although each BigQuery column's value changed)."""
    return "TRUE" if rewrite else f"T.{q(ROW_HASH_COLUMN)} IS DISTINCT FROM S.{q(ROW_HASH_COLUMN)}"


def _key_match(schema: TableSchema, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{q(c.bq_name)} = {right}.{q(c.bq_name)}" for c in schema.key_columns)


def merge_statement(schema: TableSchema, target: str, staging: str, deleted: str | None = None, *,
                    rewrite: bool = False) -> str:
    """Full snapshot (`deleted` None): update changed, insert new, delete what the snapshot lacks.
    Delta: the same single MERGE over its rows and its deleted keys, which delete what they match;
    rows absent from a delta are unchanged. One DML statement scans the target once, where a MERGE
    and a DELETE would scan it twice."""
    columns = [c.bq_name for c in schema.columns] + list(HASH_COLUMNS)
    assignments = ", ".join(f"{q(c)} = S.{q(c)}" for c in columns)
    insert_columns = ", ".join(q(c) for c in columns)
    insert_values = ", ".join(f"S.{q(c)}" for c in columns)
    on = _key_match(schema, "T", "S")
    update = f"WHEN MATCHED AND {_changed(rewrite)} THEN UPDATE SET {assignments}"
    insert = f"THEN INSERT ({insert_columns}) VALUES ({insert_values})"
    if deleted is None:
        return (f"MERGE {target} AS T USING {staging} AS S ON {on}\n{update}\n"
                f"WHEN NOT MATCHED BY TARGET {insert}\nWHEN NOT MATCHED BY SOURCE THEN DELETE")
    gone = q(_unused_name("_matrix_deleted", columns))
    keys = {c.bq_name for c in schema.key_columns} | {KEY_HASH_COLUMN}
    deleted_values = ", ".join(f"D.{q(c)}" if c in keys else "NULL" for c in columns)
    source = (f"(SELECT {insert_columns}, FALSE AS {gone} FROM {staging}\n"
              f"  UNION ALL SELECT {deleted_values}, TRUE FROM {deleted} AS D)")
    return (f"MERGE {target} AS T USING {source} AS S ON {on}\nWHEN MATCHED AND S.{gone} THEN DELETE\n{update}\n"
            f"WHEN NOT MATCHED BY TARGET AND NOT S.{gone} {insert}")


def _unused_name(name: str, taken: list[str]) -> str:
    lowered = {t.lower() for t in taken}  # BigQuery column names are case-insensitive
    while name.lower() in lowered:
        name += "_"
    return name


def guard_query(ledger: str, *, delta: bool) -> str:
    """The snapshot's fate, decided inside the transaction from the ledger alone; what was applied
    before the table's last truncate orders nothing (`ledger.applied_since_truncate`)."""
    applied = f"FROM {ledger} WHERE table_id = v_table_id AND status = '{APPLIED}'"
    current = f"FROM {ledger} WHERE {applied_since_truncate(ledger, 'v_table_id')}"
    base_rule = ""
    if delta:
        latest_run = f"(SELECT run_id {current} ORDER BY sequence DESC LIMIT 1)"
        base_rule = (
            f"    WHEN {latest_run} IS DISTINCT FROM v_base_run_id THEN\n"
            f"      IF(EXISTS (SELECT 1 {applied} AND run_id = v_base_run_id), '{BASE_SUPERSEDED}', '{BASE_MISSING}')\n"
        )
    return (
        "SELECT CASE\n"
        f"    WHEN EXISTS (SELECT 1 {applied} AND run_id = v_run_id) THEN '{DUPLICATE}'\n"
        f"    WHEN EXISTS (SELECT 1 {current} AND sequence >= v_sequence) THEN '{STALE}'\n"
        f"{base_rule}"
        f"    ELSE '{APPLIED}' END"
    )


def count_queries(schema: TableSchema, tables: Tables, *, rewrite: bool = False) -> dict[str, str]:
    """Rows the load will insert, update and delete, from the state before it."""
    match = _key_match(schema, "T", "S")
    target, staging = tables.target, tables.staging
    if tables.deleted is None:
        deleted = f"SELECT COUNT(*) FROM {target} AS T WHERE NOT EXISTS (SELECT 1 FROM {staging} AS S WHERE {match})"
    else:
        deleted = (f"SELECT COUNT(*) FROM {target} AS T WHERE EXISTS "
                   f"(SELECT 1 FROM {tables.deleted} AS D WHERE {_key_match(schema, 'T', 'D')})")
    return {
        "inserted": f"SELECT COUNT(*) FROM {staging} AS S WHERE NOT EXISTS (SELECT 1 FROM {target} AS T WHERE {match})",
        "updated": (f"SELECT COUNT(*) FROM {staging} AS S JOIN {target} AS T ON {match} "
                      f"WHERE {_changed(rewrite)}"),
        "deleted": deleted,
    }


def repeated_keys_query(schema: TableSchema, staging: str) -> str:
    """The keys the staged rows hold more than once. The extractor leaves out keys the source holds
    twice, but rows the source tells apart can still land as one BigQuery key (1 and '1' in an
    untyped SQLite column, two spellings of one DATETIME); a MERGE cannot match a target row to two
    source rows (BigQuery fails it, the emulator garbles it), and an insert would duplicate the key."""
    keys = ", ".join(q(c.bq_name) for c in schema.key_columns)
    return f"SELECT {keys} FROM {staging} GROUP BY {keys} HAVING COUNT(*) > 1"


def held_twice_sql(schema: TableSchema, target: str) -> str:
    """A condition on target rows `T`: their key is held by more than one row of the target."""
    keys = ", ".join(q(c.bq_name) for c in schema.key_columns)
    match = _key_match(schema, "T", "R")
    return f"EXISTS (SELECT 1 FROM (SELECT {keys} FROM {target} GROUP BY {keys} HAVING COUNT(*) > 1) AS R WHERE {match})"


def _replace_held_twice(schema: TableSchema, target: str, opening: str) -> str:
    """Before a full snapshot's MERGE: rows of keys the target holds twice (written behind the
    pipeline's back) are deleted, the counts taken again, and the MERGE inserts the snapshot's one
    row for each. Left in place, every copy would match and stay, the row count check would roll
    the load back, and no snapshot could ever heal the table."""
    return (f"  IF opening.held_twice > 0 THEN\n"
            f"    DELETE FROM {target} AS T WHERE {held_twice_sql(schema, target)};\n"
            f"    SET v_message = CONCAT(IFNULL(CONCAT(v_message, '; '), ''), 'replaced ', "
            f"CAST(opening.held_twice AS STRING), ' row(s) of keys the table held more than once');\n"
            f"    SET opening = ({opening});\n"
            f"  END IF;\n")


def ledger_insert(ledger: str) -> str:
    return (
        f"INSERT INTO {ledger} (table_id, source_table, run_id, sequence, mode, status, manifest_uri, "
        "rows_inserted, rows_updated, rows_deleted, source_rows, bytes, extracted_at, recorded_at, message, "
        "key_columns, published_at, hashed_columns)\n"
        f"SELECT v_table_id, v_source_table, v_run_id, v_sequence, v_mode, '{APPLIED}', v_manifest_uri, "
        "opening.inserted, opening.updated, opening.deleted, v_source_rows, v_bytes, v_extracted_at, "
        "CURRENT_TIMESTAMP(), v_message, v_key_columns, NULL, v_hashed_columns"
    )


OPENING_FIELDS = "outcome STRING, repeated_keys BOOL, held_twice INT64, inserted INT64, updated INT64, deleted INT64"


def opening_query(schema: TableSchema, tables: Tables, *, rewrite: bool = False) -> str:
    """Everything the load reads before it writes, in one query (each statement of a script is a
    job of its own in BigQuery): the guard's outcome, whether staged rows repeat a key, the rows of
    keys a full snapshot's target holds twice, and the counts the ledger records."""
    delta = tables.deleted is not None
    repeated = "FALSE" if schema.keyless else f"EXISTS ({repeated_keys_query(schema, tables.staging)})"
    held_twice = "0" if schema.keyless or delta else (
        f"(SELECT COUNT(*) FROM {tables.target} AS T WHERE {held_twice_sql(schema, tables.target)})")
    counts = _counts(schema, tables, rewrite)
    return (f"SELECT AS STRUCT ({guard_query(tables.ledger, delta=delta)}) AS outcome, {repeated} AS repeated_keys, "
            f"{held_twice} AS held_twice, "
            + ", ".join(f"({counts[name]}) AS {name}" if name in counts else f"0 AS {name}"
                        for name in ("inserted", "updated", "deleted")))


def _counts(schema: TableSchema, tables: Tables, rewrite: bool) -> dict[str, str]:
    if schema.keyless:
        return keyless_sql.count_queries(tables.target, tables.staging)
    return count_queries(schema, tables, rewrite=rewrite)


def _writes(schema: TableSchema, tables: Tables, rewrite: bool) -> list[str]:
    """The statements that change the table: by key (one MERGE), or for a keyless table by
    multiplicity (`shared.loader.keyless_sql`)."""
    if schema.keyless:
        if tables.deleted is not None:
            raise ValueError("a keyless table has no delta snapshots")
        return [keyless_sql.delete_statement(tables.target, tables.staging, rewrite=rewrite),
                keyless_sql.insert_statement(schema, tables.target, tables.staging)]
    return [merge_statement(schema, tables.target, tables.staging, tables.deleted, rewrite=rewrite)]


def load_script(schema: TableSchema, target: str, staging: str, ledger: str, values: LoadValues, *,
                deleted: str | None = None, rewrite: bool = False, fault: bool = False) -> str:
    """A script whose last statement returns the counts (what an `applied` load writes) and the
    outcome (one of OUTCOMES).

    One query reads all the script needs before writing (`opening_query`). Guard, ledger row and
    writes share one transaction, so a crash leaves all or nothing and a second delivery finds the
    ledger row. The table must end with exactly the manifest's row count, or
    everything is rolled back (`diverged`): a delta applied to a table that is not its base's
    result must not commit. A full snapshot first replaces the rows of keys the table holds twice. Staged rows holding a key twice write nothing (`duplicate_keys`).
    `fault` (tests only) fails the script after the first write. A keyless table is applied by
    multiplicity instead of by key, in the same transaction.
    """
    tables = Tables(target, staging, ledger, deleted)
    opening = opening_query(schema, tables, rewrite=rewrite)
    writes = [w + ";" for w in _writes(schema, tables, rewrite)]
    if fault:
        writes.insert(1, "SELECT ERROR('MATRIX_FAULT=during_merge');")
    body = "\n".join(f"  {w}" for w in writes)
    replace_held_twice = "" if schema.keyless or deleted is not None else _replace_held_twice(schema, target, opening)
    return f"""
{values.declarations()}
DECLARE outcome STRING DEFAULT NULL;
DECLARE opening STRUCT<{OPENING_FIELDS}> DEFAULT NULL;
DECLARE v_rows_after INT64 DEFAULT NULL;
BEGIN TRANSACTION;
SET opening = ({opening});
SET outcome = IF(opening.outcome = '{APPLIED}' AND opening.repeated_keys, '{DUPLICATE_KEYS}', opening.outcome);
IF outcome = '{APPLIED}' THEN
{replace_held_twice}  {ledger_insert(ledger)};
{body}
  SET v_rows_after = (SELECT COUNT(*) FROM {target});
END IF;
IF outcome = '{APPLIED}' AND v_rows_after != v_source_rows THEN
  ROLLBACK TRANSACTION;
  SET outcome = '{DIVERGED}';
ELSE
  COMMIT TRANSACTION;
END IF;
SELECT opening.inserted AS rows_inserted, opening.updated AS rows_updated, opening.deleted AS rows_deleted, v_rows_after AS rows_after, outcome AS outcome;
""".strip()
