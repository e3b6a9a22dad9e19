from pathlib import Path

import pytest

from shared.config import ConfigError, load_config, name_parts

VALID = """
source:
  url: sqlite:///matrix.db
tables:
  - name: dbo.customers
    key: [customer_id]
  - name: deliveries
    key: [subscription_id, delivery_date]
    target: deliveries_v2
gcs: {bucket: matrix-snapshots}
bigquery: {project: acme-dwh, dataset: matrix}
pubsub: {project: acme-dwh}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix-sync.yaml"
    path.write_text(text)
    return path


def test_valid_config_parses_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ={})
    assert config.tables[0].schema_name == "dbo"
    assert config.tables[0].target_table == "customers"
    assert config.tables[1].target_table == "deliveries_v2"
    assert config.gcs.prefix == "snapshots"
    assert config.extract.chunk_rows == 50_000
    assert config.source.url == f"sqlite:///{(tmp_path / 'matrix.db').resolve()}"


def test_a_table_is_found_by_its_name_or_target_in_any_case(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ={})
    assert [config.table(name).target_table for name in ("dbo.customers", "DBO.Customers", "CUSTOMERS",
                                                         "deliveries", "Deliveries_V2")] == [
        "customers", "customers", "customers", "deliveries_v2", "deliveries_v2"]
    with pytest.raises(ConfigError, match=r"table 'orders' is not in the config \(its tables: dbo.customers, "
                                          r"deliveries\)"):
        config.table("orders")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), environ={
        "MATRIX_SOURCE__URL": "mssql+pymssql://etl:pw@matrix-db/Matrix",
        "MATRIX_GCS__BUCKET": "other-bucket", "MATRIX_EXTRACT__CHUNK_ROWS": "1000", "UNRELATED": "x",
    })
    assert config.source.url.startswith("mssql+pymssql://")
    assert config.gcs.bucket == "other-bucket"
    assert config.extract.chunk_rows == 1000


@pytest.mark.parametrize(("change", "message"), [
    (("gcs: {bucket: matrix-snapshots}", "gcs: {bucket: matrix-snapshots, colour: red}"), "gcs.colour: unknown key"),
    (("name: dbo.customers", "name: 'a.b.c'"), "tables[0].name"),
    (("name: dbo.customers", "name: 'dbo.[Order.Items'"), "[ without its closing ]"),
    (("name: dbo.customers", "name: '[dbo]x.Items'"), "a quoted name part must end at a dot"),
    (("name: dbo.customers", "name: \"dbo.cust\\tomers\""), "tables[0].name"),
    (("key: [customer_id]", "key: [' id']"), "tables[0].key"),
    (("dataset: matrix", "dataset: 'matrix-prod'"), "bigquery.dataset"),
    (("bucket: matrix-snapshots", "bucket: Matrix_Snapshots!"), "gcs.bucket"),
    (("key: [customer_id]", "key: []"), "tables[0].key"),
    (("target: deliveries_v2", "target: customers"), "two tables share the target table"),
    (("bucket: matrix-snapshots}", "bucket: matrix-snapshots, prefix: \"a\\nb\"}"), "invalid object prefix 'a\\nb'"),
    (("bucket: matrix-snapshots}", f"bucket: matrix-snapshots, prefix: {'p' * 513}}}"), "at most 512 bytes"),
    (("target: deliveries_v2", "target: _sync_ledger"), "'_sync_ledger': names starting with '_sync_' are the "
                                                        "pipeline's own"),
    (("name: dbo.customers", "name: dbo._SYNC_validations"), "'_SYNC_validations': names starting with '_sync_'"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, VALID.replace(*change))
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_missing_section_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pubsub: Field required"):
        load_config(write(tmp_path, VALID.replace("pubsub: {project: acme-dwh}", "")), environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "source: [unclosed"), environ={})


def test_hostile_source_names_are_kept_for_quoting_and_mapped_for_bigquery(tmp_path: Path) -> None:
    text = VALID.replace("name: dbo.customers", "name: 'dbo.Order Details; DROP TABLE x'").replace(
        "key: [customer_id]", "key: ['Order ID']")
    table = load_config(write(tmp_path, text), environ={}).tables[0]
    assert table.table_name == "Order Details; DROP TABLE x"
    assert table.target_table == "Order_x0020_Details_x003B__x0020_DROP_x0020_TABLE_x0020_x"


def test_key_is_optional_and_then_the_primary_key(tmp_path: Path) -> None:
    import sqlite3

    from shared.extractor.source import connect, discover

    database = tmp_path / "matrix.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE deliveries (sub INTEGER, day DATE, copies INTEGER, PRIMARY KEY (sub, day))")
        connection.execute("CREATE TABLE heap (a INTEGER, b TEXT)")
    text = VALID.replace("name: dbo.customers\n    key: [customer_id]", "name: deliveries").replace(
        "name: deliveries\n    key: [subscription_id, delivery_date]\n    target: deliveries_v2", "name: heap")
    config = load_config(write(tmp_path, text.replace("sqlite:///matrix.db", f"sqlite:///{database}")), environ={})
    assert config.tables[0].key is None
    engine = connect(config.source)
    assert discover(engine, config.tables[0]).schema.key == ["sub", "day"]
    heap = discover(engine, config.tables[1]).schema  # no key at all: keyless (README "Tables without a key")
    assert (heap.keyless, heap.key) == (True, [])
    engine.dispose()


@pytest.mark.parametrize(("name", "parts"), [
    ("dbo.Customers", ["dbo", "Customers"]),
    ("Customers", ["Customers"]),
    ("dbo.[Order.Items]", ["dbo", "Order.Items"]),
    ('"Sales Dept"."Order.Items"', ["Sales Dept", "Order.Items"]),
    ("[a]]b].c", ["a]b", "c"]),
    ('"a""b".c', ['a"b', "c"]),
])
def test_a_name_part_may_hold_a_dot_when_quoted(name: str, parts: list[str]) -> None:
    assert name_parts(name) == parts


def test_a_quoted_table_name_is_the_source_name_unquoted(tmp_path: Path) -> None:
    text = VALID.replace("name: dbo.customers", "name: '[Sales Dept].[Order.Items]'")
    table = load_config(write(tmp_path, text), environ={}).tables[0]
    assert (table.schema_name, table.table_name, table.target_table) == ("Sales Dept", "Order.Items",
                                                                         "Order_x002E_Items")


def test_an_override_that_breaks_the_config_is_named_and_an_unknown_section_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError, match=r"extract\.chunk_rows: .* \(set by MATRIX_EXTRACT__CHUNK_ROWS\)"):
        load_config(path, environ={"MATRIX_EXTRACT__CHUNK_ROWS": "0"})
    with pytest.raises(ConfigError, match="environment variable MATRIX_EXTRAKT__CHUNK_ROWS: no config section 'extrakt'"):
        load_config(path, environ={"MATRIX_EXTRAKT__CHUNK_ROWS": "0"})
    with pytest.raises(ConfigError, match="no config section 'tables'"):
        load_config(path, environ={"MATRIX_TABLES__X": "y"})
    assert load_config(path, environ={"MATRIX_STACK_DIR": "x", "MATRIX_VALIDATION": "{}"}).extract.chunk_rows == 50_000
