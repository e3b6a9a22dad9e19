"""The load transaction, generated from the schema: ledger guard, counts, MERGE and ledger row.

Identifiers are quoted by `shared.identifiers.quote_bigquery` only; values become script
variables with literals rendered by `shared.sql_literals`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared import sql_literals as lit
from shared.identifiers import quote_bigquery as q
from shared.ledger import APPLIED, DUPLICATE, STALE
from shared.schema import HASH_COLUMNS, ROW_HASH_COLUMN, TableSchema


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

    def declarations(self) -> str:
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
        ])


def _key_match(schema: TableSchema, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{q(c.bq_name)} = {right}.{q(c.bq_name)}" for c in schema.key_columns)


def merge_statement(schema: TableSchema, target: str, staging: str) -> str:
    columns = [c.bq_name for c in schema.columns] + list(HASH_COLUMNS)
    assignments = ", ".join(f"{q(c)} = S.{q(c)}" for c in columns)
    insert_columns = ", ".join(q(c) for c in columns)
    insert_values = ", ".join(f"S.{q(c)}" for c in columns)
    row_hash = q(ROW_HASH_COLUMN)
    return (
        f"MERGE {target} AS T USING {staging} AS S ON {_key_match(schema, 'T', 'S')}\n"
        f"WHEN MATCHED AND T.{row_hash} IS DISTINCT FROM S.{row_hash} THEN UPDATE SET {assignments}\n"
        f"WHEN NOT MATCHED BY TARGET THEN INSERT ({insert_columns}) VALUES ({insert_values})\n"
        f"WHEN NOT MATCHED BY SOURCE THEN DELETE"
    )


def load_script(schema: TableSchema, target: str, staging: str, ledger: str, values: LoadValues) -> str:
    """A script whose last statement returns the outcome: applied, duplicate or stale.

    The guard and the writes sit in one transaction with the ledger row, so a crash leaves all or
    nothing and a second delivery of the same snapshot is recognised by its ledger row.
    """
    match = _key_match(schema, "T", "S")
    row_hash = q(ROW_HASH_COLUMN)
    return f"""
{values.declarations()}
DECLARE seen_before BOOL DEFAULT EXISTS (
  SELECT 1 FROM {ledger} WHERE table_id = v_table_id AND run_id = v_run_id AND status = '{APPLIED}');
DECLARE newer_applied BOOL DEFAULT EXISTS (
  SELECT 1 FROM {ledger} WHERE table_id = v_table_id AND sequence > v_sequence AND status = '{APPLIED}');
IF NOT seen_before AND NOT newer_applied THEN
  BEGIN TRANSACTION;
  INSERT INTO {ledger} (table_id, source_table, run_id, sequence, mode, status, manifest_uri,
    rows_inserted, rows_updated, rows_deleted, source_rows, bytes, extracted_at, recorded_at, message)
  SELECT v_table_id, v_source_table, v_run_id, v_sequence, v_mode, '{APPLIED}', v_manifest_uri,
    (SELECT COUNT(*) FROM {staging} AS S WHERE NOT EXISTS (SELECT 1 FROM {target} AS T WHERE {match})),
    (SELECT COUNT(*) FROM {staging} AS S JOIN {target} AS T ON {match} WHERE T.{row_hash} IS DISTINCT FROM S.{row_hash}),
    (SELECT COUNT(*) FROM {target} AS T WHERE NOT EXISTS (SELECT 1 FROM {staging} AS S WHERE {match})),
    v_source_rows, v_bytes, v_extracted_at, CURRENT_TIMESTAMP(), NULL;
  {merge_statement(schema, target, staging)};
  COMMIT TRANSACTION;
END IF;
SELECT CASE WHEN seen_before THEN '{DUPLICATE}' WHEN newer_applied THEN '{STALE}' ELSE '{APPLIED}' END AS outcome;
""".strip()
