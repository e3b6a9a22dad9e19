"""`compare-keys` names a target that no longer holds the source's columns, before any query."""
from __future__ import annotations

import pytest
from google.cloud import bigquery

from matrix_sync import compare_bigquery
from matrix_sync.compare_result import CompareError
from shared.schema import Column, TableSchema

SCHEMA = TableSchema(columns=[Column(name="id", bq_name="id", source_type="int", bq_type="INT64"),
                              Column(name="i", bq_name="i", source_type="varchar(20)", bq_type="STRING"),
                              Column(name="t2", bq_name="t2", source_type="text", bq_type="STRING")], key=["id"])


def test_a_retyped_or_renamed_source_column_is_named_instead_of_failing_the_query(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A source column changed INT -> VARCHAR (the loader refused it) made the comparison's query
    fail with BigQuery's own binder error and a traceback in the log."""
    target = bigquery.Table("p.d.t", schema=[bigquery.SchemaField(n, k) for n, k in
                                             (("id", "INTEGER"), ("i", "INTEGER"), ("t", "STRING"))])
    monkeypatch.setattr(compare_bigquery.bq, "get_table", lambda _table_id: target)
    with pytest.raises(CompareError) as refused:
        compare_bigquery.check_target(SCHEMA, "p.d.t")
    assert "column i is INT64 in BigQuery, not STRING; column t2 missing in BigQuery" in str(refused.value)
    widened = bigquery.Table("p.d.t", schema=[bigquery.SchemaField(n, k) for n, k in
                                              (("id", "NUMERIC"), ("i", "STRING"), ("t2", "STRING"))])
    monkeypatch.setattr(compare_bigquery.bq, "get_table", lambda _table_id: widened)
    assert compare_bigquery.check_target(SCHEMA, "p.d.t") == 0  # a widening still compares
