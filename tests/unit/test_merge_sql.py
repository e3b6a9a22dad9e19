import sqlglot
from sqlglot import exp

from shared.identifiers import quote_bigquery
import datetime as dt

from shared.loader.merge_sql import LoadValues, load_script, merge_statement
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
LEDGER = quote_bigquery("acme-dwh", "matrix", "_sync_ledger")
VALUES = LoadValues(table_id="acme-dwh.matrix.deliveries", source_table="dbo.Deliveries",
                    run_id="20261125T101010000001Z-abcdef", sequence=17, mode="full",
                    manifest_uri="gs://b/snapshots/deliveries/x/_manifest.json", source_rows=3, bytes=100,
                    extracted_at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC))


def test_merge_is_valid_bigquery_with_three_branches() -> None:
    statement = sqlglot.parse_one(merge_statement(SCHEMA, TARGET, STAGING), read="bigquery")
    assert isinstance(statement, exp.Merge)
    whens = statement.args["whens"].expressions
    assert len(whens) == 3
    sql = merge_statement(SCHEMA, TARGET, STAGING)
    assert "T.`subscription_id` = S.`subscription_id` AND T.`delivery_date` = S.`delivery_date`" in sql
    assert "`select` = S.`select`" in sql  # a reserved word survives as a quoted identifier
    assert "T.`_row_hash` IS DISTINCT FROM S.`_row_hash`" in sql


def test_every_statement_of_the_load_script_parses_as_bigquery() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, VALUES)
    statements = [s for s in sqlglot.parse(script, read="bigquery") if s is not None]
    kinds = [type(s).__name__ for s in statements]
    assert "Merge" in kinds and "Insert" in kinds
    assert script.index("BEGIN TRANSACTION") < script.index("INSERT INTO") < script.index("MERGE") < script.index(
        "COMMIT TRANSACTION")
    assert script.rstrip().endswith("AS outcome;")


def test_values_are_declared_once_as_script_variables() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER, VALUES)
    assert "DECLARE v_run_id STRING DEFAULT '20261125T101010000001Z-abcdef';" in script
    assert "DECLARE v_sequence INT64 DEFAULT 17;" in script
    assert "20261125T101010000001Z-abcdef" not in script.split("DECLARE seen_before")[1]
