"""PostgreSQL domains, replicated as the types they are declared over. SQLAlchemy reflects a domain
column as DOMAIN(name, base type) with the base type's length, precision and scale left out, and no
BigQuery type is mapped from DOMAIN itself, so without this an integer or timestamp domain would
land as its text in STRING."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

_DECLARED = sa.text(
    "SELECT column_name, character_maximum_length, numeric_precision, numeric_scale "
    "FROM information_schema.columns WHERE table_schema = COALESCE(:schema, current_schema()) "
    "AND table_name = :table"
)


def unwrap(engine: Engine, table: sa.Table) -> None:
    """Gives each domain column of `table` the type underneath its domain (through domains of
    domains), with the length, precision and scale the catalog declares for it."""
    domains = [c for c in table.columns if isinstance(c.type, postgresql.DOMAIN)]
    if not domains:
        return
    with engine.connect() as connection:
        declared = {row.column_name: row for row in connection.execute(
            _DECLARED, {"schema": table.schema, "table": table.name})}
    for column in domains:
        base = column.type
        while isinstance(base, postgresql.DOMAIN):
            base = base.data_type
        row = declared.get(column.name)
        if row is not None and isinstance(base, sa.Numeric) and not isinstance(base, sa.Float):
            base = type(base)(precision=row.numeric_precision, scale=row.numeric_scale)
        elif row is not None and isinstance(base, sa.String) and row.character_maximum_length is not None:
            base = type(base)(length=row.character_maximum_length)
        column.type = base
