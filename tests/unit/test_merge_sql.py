"""The generated load scripts, parsed with a BigQuery grammar statement by statement (sqlglot turns
scripting's IF blocks into opaque commands, so their conditions and bodies are parsed apart)."""
import datetime as dt
import re

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from shared.identifiers import quote_bigquery
from shared.loader.merge_sql import (
    LoadValues,
    Tables,
    count_queries,
    guard_query,
    load_script,
    merge_statement,
    opening_query,
)
from shared.schema import Column, TableSchema

SCHEMA = TableSchema(
    columns=[
        Column(name="subscription_id", bq_name="subscription_id", source_type="integer", bq_type="INT64", nullable=False),
        Column(name="delivery date", bq_name="delivery_date", source_type="date", bq_type="DATE", nullable=False),
        Column(name="select", bq_name="select", source_type="int", bq_type="INT64"),
    ],
    key=["subscription_id", "delivery date"],
)
TARGET = quote_bigquery("acme-dwh", "matrix", "deliveries")
STAGING = quote_bigquery("acme-dwh", "matrix_staging", "deliveries_run")
DELETED = quote_bigquery("acme-dwh", "matrix_staging", "deliveries_deleted")
LEDGER = quote_bigquery("acme-dwh", "matrix", "_sync_ledger")
VALUES = LoadValues(table_id="acme-dwh.matrix.deliveries", source_table="dbo.Deliveries",
                    run_id="20261125T101010000001Z-abcdef", sequence=17, mode="full",
                    manifest_uri="gs://b/snapshots/deliveries/x/_manifest.json", source_rows=3, bytes=100,
                    extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC), key_columns="subscription_id,delivery_date")
DELTA_VALUES = LoadValues(**{**VALUES.__dict__, "mode": "delta", "base_run_id": "20261124T101010000001Z-123456"})
KNOWN = (exp.Declare, exp.Transaction, exp.Commit, exp.Rollback, exp.Set, exp.Insert, exp.Merge, exp.Delete, exp.Select)


def strict(sql: str) -> exp.Expression:
    statement = sqlglot.parse_one(sql, read="bigquery", error_level=ErrorLevel.RAISE)
    assert not isinstance(statement, exp.Command), sql
    return statement


def script_statements(script: str) -> list[exp.Expression]:
    """Every statement of a script, IF conditions as SELECTs, each parsed strictly."""
    plain: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        condition = re.fullmatch(r"IF (.+) THEN", stripped)
        if condition:
            plain.append(f"SELECT {condition.group(1)};")
        elif stripped not in ("ELSE", "END IF;"):
            plain.append(line)
    statements = [s for s in sqlglot.parse("\n".join(plain), read="bigquery", error_level=ErrorLevel.RAISE) if s]
    unknown = [s.sql("bigquery")[:80] for s in statements if not isinstance(s, KNOWN)]
    assert not unknown, unknown
    return statements


def test_full_merge_has_three_branches_and_quotes_every_identifier() -> None:
    statement = strict(merge_statement(SCHEMA, TARGET, STAGING))
    assert isinstance(statement, exp.Merge)
    assert len(statement.args["whens"].expressions) == 3
    sql = merge_statement(SCHEMA, TARGET, STAGING)
    assert "T.`subscription_id` = S.`subscription_id` AND T.`delivery_date` = S.`delivery_date`" in sql
    assert "`select` = S.`select`" in sql  # a reserved word survives as a quoted identifier
    assert "T.`_row_hash` IS DISTINCT FROM S.`_row_hash`" in sql


def test_delta_merge_deletes_only_its_deleted_keys_in_the_same_statement() -> None:
    sql = merge_statement(SCHEMA, TARGET, STAGING, DELETED)
    statement = strict(sql)
    assert isinstance(statement, exp.Merge)
    whens = [w.sql("bigquery") for w in statement.args["whens"].expressions]
    assert len(whens) == 3 and "NOT MATCHED BY SOURCE" not in sql  # rows absent from a delta stay
    assert whens[0].startswith("WHEN MATCHED AND S.`_matrix_deleted` THEN DELETE")
    assert "NOT S.`_matrix_deleted` THEN INSERT" in whens[2]
    union = statement.args["using"].find(exp.Union)
    assert isinstance(union, exp.Union) and not union.args.get("distinct")
    deleted_branch = union.expression.sql("bigquery")
    assert "D.`subscription_id`, D.`delivery_date`" in deleted_branch and "D.`_key_hash`" in deleted_branch
    assert "T.`subscription_id` = S.`subscription_id` AND T.`delivery_date` = S.`delivery_date`" in sql


def test_the_deleted_marker_never_takes_a_column_name() -> None:
    column = SCHEMA.columns[0].model_copy(update={"name": "_matrix_deleted", "bq_name": "_MATRIX_DELETED"})
    schema = SCHEMA.model_copy(update={"columns": [*SCHEMA.columns, column]})
    sql = merge_statement(schema, TARGET, STAGING, DELETED)
    strict(sql)
    assert "FALSE AS `_matrix_deleted_`" in sql and "WHEN MATCHED AND S.`_matrix_deleted_` THEN DELETE" in sql


@pytest.mark.parametrize("delta", [False, True])
def test_guard_and_counts_are_valid_queries(delta: bool) -> None:
    guard = guard_query(LEDGER, delta=delta)
    assert isinstance(strict(guard), exp.Select)
    assert ("v_base_run_id" in guard) == delta
    tables = Tables(TARGET, STAGING, LEDGER, DELETED if delta else None)
    for sql in count_queries(SCHEMA, tables).values():
        assert isinstance(strict(sql), exp.Select)
    assert isinstance(strict(opening_query(SCHEMA, tables)), exp.Select)


@pytest.mark.parametrize("delta", [False, True])
def test_everything_read_before_the_first_write_is_one_statement(delta: bool) -> None:
    """Each statement of a script is a job of its own in BigQuery: the guard, the repeated-keys
    check and the counts are one query, not five."""
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, DELTA_VALUES if delta else VALUES,
                         deleted=DELETED if delta else None)
    statements = script_statements(script.split("BEGIN TRANSACTION;")[1])
    before_writes = statements[:next(i for i, s in enumerate(statements) if isinstance(s, (exp.Insert, exp.Delete)))]
    reading = [s for s in before_writes if s.find(exp.From)]
    assert len(reading) == 1 and isinstance(reading[0], exp.Set)
    opening = reading[0].sql("bigquery")
    assert "HAVING COUNT(*) > 1" in opening and "COUNT(*)" in opening and "'stale'" in opening


def test_full_script_parses_statement_by_statement_in_transaction_order() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, VALUES)
    kinds = [type(s).__name__ for s in script_statements(script)]
    assert kinds.count("Merge") == 1 and kinds.count("Insert") == 1
    # the one DELETE replaces rows of keys the table holds twice, before the counts and the MERGE
    assert kinds.count("Delete") == 1 and kinds.index("Transaction") < kinds.index("Delete") < kinds.index("Insert")
    assert kinds.index("Transaction") < kinds.index("Insert") < kinds.index("Merge") < kinds.index("Commit")
    # counted again after that DELETE, before the MERGE
    assert script.index("opening.held_twice > 0") < script.index("SET opening", script.index("DELETE")) < script.index("MERGE")
    assert "Rollback" in kinds  # the row-count check's way out
    assert script.rstrip().endswith("outcome AS outcome;")
    assert "ERROR(" not in script


def test_delta_script_applies_rows_and_deleted_keys_in_one_merge_inside_the_transaction() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, DELTA_VALUES, deleted=DELETED)
    statements = script_statements(script)
    kinds = [type(s).__name__ for s in statements]
    assert kinds.count("Merge") == 1 and "Delete" not in kinds
    assert kinds.index("Transaction") < kinds.index("Insert") < kinds.index("Merge") < kinds.index("Commit")
    merge = next(s for s in statements if isinstance(s, exp.Merge))
    assert len(merge.args["whens"].expressions) == 3
    assert "DECLARE v_base_run_id STRING DEFAULT '20261124T101010000001Z-123456';" in script
    assert script.index("SET opening") < script.index("MERGE")  # counted before the changes


def test_fault_fails_the_script_between_merge_and_commit() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, DELTA_VALUES, deleted=DELETED, fault=True)
    assert script.index("MERGE") < script.index("SELECT ERROR('MATRIX_FAULT=during_merge')") < script.index("COMMIT")
    script_statements(script)


def test_values_are_declared_once_as_script_variables() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, VALUES)
    assert "DECLARE v_run_id STRING DEFAULT '20261125T101010000001Z-abcdef';" in script
    assert "DECLARE v_sequence INT64 DEFAULT 17;" in script
    assert "DECLARE v_base_run_id STRING DEFAULT NULL;" in script
    body = script.split("BEGIN TRANSACTION")[1]
    assert "20261125T101010000001Z-abcdef" not in body
    declared = set(re.findall(r"DECLARE (\w+) ", script))
    used = set(re.findall(r"\bv_\w+", body)) | {"outcome"}
    assert used <= declared, used - declared


def test_a_hostile_value_stays_inside_its_literal() -> None:
    values = LoadValues(**{**VALUES.__dict__, "source_table": "x'; DROP TABLE t; --"})
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, values)
    assert "DECLARE v_source_table STRING DEFAULT 'x\\'; DROP TABLE t; --';" in script
    assert not any(isinstance(s, exp.Drop) for s in script_statements(script))


def test_a_rewrite_writes_every_matched_row_and_records_why() -> None:
    values = LoadValues(**{**VALUES.__dict__, "hashed_columns": '["a", "b"]', "message": "every row rewritten"})
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, values, rewrite=True)
    merge = next(s for s in script_statements(script) if isinstance(s, exp.Merge))
    assert "IS DISTINCT FROM" not in merge.sql("bigquery")
    assert "WHEN MATCHED AND TRUE THEN UPDATE" in script
    assert "DECLARE v_hashed_columns STRING DEFAULT '[\"a\", \"b\"]';" in script
    assert "DECLARE v_message STRING DEFAULT 'every row rewritten';" in script
    updated = count_queries(SCHEMA, Tables(TARGET, STAGING, LEDGER), rewrite=True)["updated"]
    assert updated.endswith("WHERE TRUE")
