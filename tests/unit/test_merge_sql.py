import sqlglot
from sqlglot import exp

from shared.identifiers import quote_bigquery
from shared.loader.merge_sql import load_script, merge_statement
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
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER)
    statements = [s for s in sqlglot.parse(script, read="bigquery") if s is not None]
    kinds = [type(s).__name__ for s in statements]
    assert "Merge" in kinds and "Insert" in kinds
    assert script.index("BEGIN TRANSACTION") < script.index("INSERT INTO") < script.index("MERGE") < script.index(
        "COMMIT TRANSACTION")
    assert script.rstrip().endswith("AS outcome;")


def test_values_travel_as_parameters_not_text() -> None:
    script = load_script(SCHEMA, TARGET, STAGING, LEDGER)
    for parameter in ("@table_id", "@run_id", "@sequence", "@manifest_uri", "@extracted_at"):
        assert parameter in script
