"""`matrix-sync create-tables` and `matrix-sync generate-models`: files generated from the source.

Both discover every configured table from the source (the same discovery the extractor uses) and
write one readable file per table, to be reviewed and committed like code:

* ``create-tables`` -> ``generated/ddl/<table>.sql``: the BigQuery ``CREATE TABLE IF NOT EXISTS``
  (`shared.ddl`); with ``--apply`` each statement is also run against BigQuery.
* ``generate-models`` -> ``generated/models/<table>.py`` plus ``__init__.py``: pydantic row models
  (`shared.models`).

A file is written only when its content changes, so regenerating an unchanged source touches
nothing and a diff shows exactly what the source changed. Expected failures (bad config,
unreachable source, a missing table) print one line and exit 2, as every matrix-sync command does.
"""
from __future__ import annotations

import keyword
import re
from pathlib import Path

import click
from google.api_core.exceptions import GoogleAPIError
from google.cloud import bigquery
from rich.table import Table
from rich.text import Text

from matrix_sync.console import console
from matrix_sync.environment import target_config
from matrix_sync.errors import one_line_errors
from matrix_sync.stack import StackError
from shared import bigquery as bq
from shared.clients import emulated
from shared.config import Config, ConfigError, TableConfig, load_config
from shared.ddl import cluster_columns, create_table_ddl, emulator_refusal
from shared.extractor.source import SourceError, connect, discover
from shared.models import class_name_for, docstring_literal, model_source
from shared.schema import TableSchema
from shared.validator.live_schema import standard_type

WRITTEN, UNCHANGED = "written", "unchanged"


class GenerateError(ValueError):
    """Two tables that would land in the same generated file or class."""


EXPECTED_ERRORS = (ConfigError, SourceError, GenerateError, GoogleAPIError, StackError)


_one_line_errors = one_line_errors(*EXPECTED_ERRORS)


def write_if_changed(path: Path, text: str) -> str:
    """Writes `text` (UTF-8, LF) unless the file already holds exactly that; returns what happened."""
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return UNCHANGED
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return WRITTEN


def discover_all(config: Config) -> list[tuple[TableConfig, TableSchema, str]]:
    """Every configured table with its discovered schema and the source's dialect, all before any
    file is written, so a table missing from the source leaves the generated files as they were."""
    engine = connect(config.source)
    try:
        return [(table, found.schema, found.dialect) for table in config.tables
                for found in (discover(engine, table),)]
    finally:
        engine.dispose()


def _existing(table: bigquery.Table, schema: TableSchema) -> str:
    """What `--apply` says of a table that already exists: CREATE TABLE IF NOT EXISTS leaves it as
    it is, however it differs from the DDL (the loader applies new columns and widenings)."""
    have = {f.name.lower(): standard_type(f.field_type) for f in table.schema}
    differs = [f"{f.name} {standard_type(f.field_type)}" + (f" (is {have[f.name.lower()]})" if f.name.lower() in have
                                                            else " (missing)")
               for f in bq.table_fields(schema) if have.get(f.name.lower()) != standard_type(f.field_type)]
    return f"exists, left as it is; differs: {', '.join(differs)}" if differs else "exists, left as it is"


def _create(table_id: str, schema: TableSchema, ddl: str) -> None:
    """Runs the DDL. The emulator reads its plain NUMERIC as DuckDB's DECIMAL(18,3), which rounds
    every value to three places and cannot hold 16 integer digits: there the table is created
    from the same columns through the API, as the loader creates one (NUMERIC keeps 9 places)."""
    if not emulated():
        bq.query(table_id.split(".")[0], ddl)
        return
    bq.create_table(table_id, bq.table_fields(schema), clustering=cluster_columns(schema) or None)


def module_name_for(target_table: str) -> str:
    """A Python module name for a BigQuery table name (which may hold '-' or start with a digit)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", target_table)
    name = name if name[:1].isalpha() or name[:1] == "_" else "t_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _unique(kind: str, names: dict[str, str]) -> None:
    """`names` maps table -> generated name; two tables must not share one."""
    seen: dict[str, str] = {}
    for table, name in names.items():
        if name.lower() in seen:
            raise GenerateError(f"tables {seen[name.lower()]!r} and {table!r} would share the {kind} {name!r}")
        seen[name.lower()] = table


def _report(title: str, rows: list[tuple[str, Path, str]]) -> None:
    table = Table(title=title, title_justify="left")
    for heading in ("table", "file", "status"):
        table.add_column(heading)
    for name, path, status in rows:
        table.add_row(name, str(path), Text(status, "green") if status != UNCHANGED else status)
    console.print(table)
    changed = sum(1 for *_, status in rows if not status.startswith(UNCHANGED))
    console.print(f"{changed} file(s) written, {len(rows) - changed} unchanged")


@click.command("create-tables")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("generated/ddl"),
              show_default=True, help="directory for one <table>.sql per configured table")
@click.option("--apply", is_flag=True, help="also run each CREATE TABLE IF NOT EXISTS against BigQuery")
@_one_line_errors
def create_tables(config_path: Path, out_dir: Path, apply: bool) -> None:
    """Writes the BigQuery DDL of every configured table, from the source's current schema."""
    config = load_config(config_path)
    _unique("file", {t.name: t.target_table for t in config.tables})
    target = config.bigquery
    rows: list[tuple[str, Path, str]] = []
    statements: list[str] = []
    discovered = discover_all(config)
    for table, schema, _dialect in discovered:
        ddl = create_table_ddl(schema, target.project, target.dataset, table.target_table,
                               source_table=table.name, config_path=config_path.as_posix())
        path = out_dir / f"{table.target_table}.sql"
        rows.append((table.name, path, write_if_changed(path, ddl)))
        statements.append(ddl)
    where = ""
    if apply:
        where = f" in {target_config(config)}"
        if emulated():
            refusals = [r for table, schema, _ in discovered
                        if (r := emulator_refusal(schema, f"{target.project}.{target.dataset}.{table.target_table}"))]
            if refusals:
                raise GenerateError(f"DDL written, nothing applied: {'; '.join(refusals)}")
        bq.ensure_dataset(target.project, target.dataset, target.location)
        for i, (ddl, (table, schema, _dialect)) in enumerate(zip(statements, discovered, strict=True)):
            table_id = f"{target.project}.{target.dataset}.{table.target_table}"
            existing = bq.get_table(table_id)
            if existing is None:
                _create(table_id, schema, ddl)
            name, path, status = rows[i]
            rows[i] = (name, path, f"{status}, {'applied' if existing is None else _existing(existing, schema)}")
    _report(f"DDL for {target.project}.{target.dataset}{where} ({out_dir})", rows)


@click.command("generate-models")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("generated/models"), show_default=True,
              help="package directory for one <table>.py per configured table plus __init__.py")
@_one_line_errors
def generate_models(config_path: Path, out_dir: Path) -> None:
    """Writes a pydantic row model per configured table, from the source's current schema."""
    config = load_config(config_path)
    modules = {t.name: module_name_for(t.target_table) for t in config.tables}
    classes = {t.name: class_name_for(t.target_table) for t in config.tables}
    _unique("module", modules)
    _unique("class", classes)
    rows: list[tuple[str, Path, str]] = []
    for table, schema, dialect in discover_all(config):  # the source's own integer and date ranges
        path = out_dir / f"{modules[table.name]}.py"
        source = model_source(schema, classes[table.name], table.name, dialect)
        rows.append((table.name, path, write_if_changed(path, source)))
    init = out_dir / "__init__.py"
    rows.append(("(package)", init, write_if_changed(init, _package_init(config_path, modules, classes))))
    _report(f"row models ({out_dir})", rows)


def _package_init(config_path: Path, modules: dict[str, str], classes: dict[str, str]) -> str:
    lines = [docstring_literal(f"Row models of the tables in {config_path.as_posix()}, generated by matrix-sync."),
             "",
             "# Do not edit: regenerate with `matrix-sync generate-models`."]
    for table in sorted(modules, key=lambda t: modules[t]):
        lines.append(f"from .{modules[table]} import {classes[table]}")
    names = ", ".join(f'"{classes[t]}"' for t in sorted(modules, key=lambda t: classes[t]))
    lines += ["", f"__all__ = [{names}]"]
    return "\n".join(lines) + "\n"
