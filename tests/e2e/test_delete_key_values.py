"""`delete --key COLUMN=VALUE` refuses a value its BigQuery column's type cannot hold in one line that
names the column, as typed, beside the value and the type."""
from __future__ import annotations

import pytest
from google.cloud import bigquery

from matrix_sync.operator_views import OperatorError, parse_key_filters
from matrix_sync.stack import LocalStack
from shared import bigquery as bq

pytestmark = [pytest.mark.stack, pytest.mark.e2e]


@pytest.mark.parametrize(("key", "message"), [
    ("OrderID=abc", "--key OrderID: 'abc' is not a valid INT64 value"),
    ("OrderID=2_0", "--key OrderID: '2_0' is not a valid INT64 value"),
    ("orderid=9223372036854775808", "--key orderid: '9223372036854775808' is not a valid INT64 value"),
    ("day=2024-13-05", "--key day: '2024-13-05' is not a valid DATE value"),
    ("Order Date=2024-02-30", "--key Order Date: '2024-02-30' is not a valid DATE value"),
])
def test_a_value_the_column_cannot_hold_is_refused_naming_the_column(stack: LocalStack, unique_name: str, key: str,
                                                                     message: str) -> None:
    project, dataset = f"proj-{unique_name}", f"ds_{unique_name}"
    bq.ensure_dataset(project, dataset)
    table = f"{project}.{dataset}.orders"
    bq.create_table(table, [bigquery.SchemaField("OrderID", "INT64"), bigquery.SchemaField("day", "DATE"),
                            bigquery.SchemaField("Order_x0020_Date", "DATE")])

    with pytest.raises(OperatorError) as refused:
        parse_key_filters(table, ("OrderID=7", key) if not key.lower().startswith("orderid") else (key,))

    assert str(refused.value) == message
