"""Pydantic row models of a source table, as generated source and at runtime, and a fast row check.

A discovered `TableSchema` says what a row may hold; these models say it in Python, so a row can be
checked before it is hashed and shipped: types, NOT NULL, decimal digits and scale, text length, and,
given the source's dialect, integer ranges from `shared.type_ranges` (the bounds of the
validator's `range:` checks, so a row the model accepts passes them).
Values are checked as the SQLAlchemy driver returns them (lax pydantic mode: a driver's int for a
bool is fine), in schema column order. Converting values for BigQuery stays the job of
`shared.types.arrow_value_converter`; these models refuse, they never change a value.

Three views of one field list, so they cannot drift apart:

* `model_source` - Python source of a model class, written to a file people read and commit;
* `build_model` - the same class built at runtime with `pydantic.create_model`;
* `row_validator` / `chunk_validator` - the same field types validating a row tuple (or a chunk
  of them) without building a dict or a model instance. On 100k rows of the sample's customers
  table (a shared, noisy machine; best of five runs): 1.3-3 us a row (330k-780k rows/s) one by
  one, 1.0-2.3 us in 50k-row chunks, against 2.8-9 us through the model (dict plus instance);
  converting and hashing the same rows for the snapshot took 19-29 us a row, so checking every
  row adds well under a fifth.

Field names are the source names where those are plain Python identifiers; otherwise a readable
ASCII spelling of them (``order id`` -> ``order_id``), with the source name as the alias (so a dict
keyed by source names validates). Keywords, leading underscores (pydantic's private attributes),
the ``model_`` prefix, BaseModel's attributes and the names the generated module itself uses
(``Annotated``, ``Field``, ``Int64``, ``datetime``, ...) are renamed too: a field named like them
would shadow them inside the class body.
"""
from __future__ import annotations

import datetime
import decimal
import keyword
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from shared.schema import Column, TableSchema
from shared.type_ranges import integer_range

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_INT64_BOUNDS = (("ge", INT64_MIN), ("le", INT64_MAX))
_NUMERIC_SCALE = {"NUMERIC": 9, "BIGNUMERIC": 38}
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class _PyType:
    source: str        # how the generated file spells it
    runtime: object    # the object itself
    module: str | None = None  # what the generated file must import for it


_INT = _PyType("int", int)
_BY_BQ_TYPE: dict[str, _PyType] = {
    "INT64": _INT,
    "NUMERIC": _PyType("decimal.Decimal", decimal.Decimal, "decimal"),
    "BIGNUMERIC": _PyType("decimal.Decimal", decimal.Decimal, "decimal"),
    "FLOAT64": _PyType("float", float),
    "BOOL": _PyType("bool", bool),
    "STRING": _PyType("str", str),
    "BYTES": _PyType("bytes", bytes),
    "DATE": _PyType("datetime.date", datetime.date, "datetime"),
    "DATETIME": _PyType("datetime.datetime", datetime.datetime, "datetime"),
    "TIMESTAMP": _PyType("datetime.datetime", datetime.datetime, "datetime"),
    "TIME": _PyType("datetime.time", datetime.time, "datetime"),
    "GEOGRAPHY": _PyType("str", str),
    "JSON": _PyType("Any", Any, "typing"),
}
# STRING columns whose drivers return something else; the Arrow converter turns these into text.
_STRING_BY_SOURCE_TYPE: dict[str, _PyType] = {
    "uniqueidentifier": _PyType("uuid.UUID", uuid.UUID, "uuid"),
    "uuid": _PyType("uuid.UUID", uuid.UUID, "uuid"),
    "json": _PyType("Any", Any, "typing"),
    "jsonb": _PyType("Any", Any, "typing"),
    "null": _PyType("Any", Any, "typing"),
    "nulltype": _PyType("Any", Any, "typing"),
}


@dataclass(frozen=True)
class FieldSpec:
    """One model field: its Python name, alias, type and pydantic constraints."""

    name: str
    alias: str | None
    py_type: _PyType
    constraints: tuple[tuple[str, int], ...]
    nullable: bool
    column: Column

    @property
    def is_int64(self) -> bool:
        """An integer bounded by INT64 alone (a narrower source type spells its own bounds)."""
        return self.py_type is _INT and self.constraints == _INT64_BOUNDS

    def annotation(self) -> object:
        """The runtime annotation; `annotation_source` spells the same thing."""
        base = self.py_type.runtime
        if self.constraints:
            base = Annotated[base, Field(**dict(self.constraints))]  # type: ignore[valid-type]
        return base | None if self.nullable and base is not Any else base  # type: ignore[operator]

    def annotation_source(self) -> str:
        if self.is_int64:
            base = "Int64"
        elif self.constraints:
            arguments = ", ".join(f"{k}={v!r}" for k, v in self.constraints)
            base = f"Annotated[{self.py_type.source}, Field({arguments})]"
        else:
            base = self.py_type.source
        return f"{base} | None" if self.nullable and self.py_type.runtime is not Any else base

    def field_info(self) -> FieldInfo:
        if self.nullable:
            return Field(default=None, alias=self.alias)
        return Field(alias=self.alias)

    def default_source(self) -> str:
        """What follows the annotation in the class body ('' when nothing does)."""
        if self.alias is None:
            return " = None" if self.nullable else ""
        default = "default=None, " if self.nullable else ""
        return f" = Field({default}alias={self.alias!r})"


def _python_type(column: Column) -> _PyType:
    bq_type = column.bq_type.upper()
    if bq_type == "STRING":
        base = re.split(r"[\s(]", column.source_type.strip().lower(), maxsplit=1)[0]
        if base in _STRING_BY_SOURCE_TYPE:
            return _STRING_BY_SOURCE_TYPE[base]
    try:
        return _BY_BQ_TYPE[bq_type]
    except KeyError:
        raise ValueError(f"no Python type for BigQuery type {column.bq_type!r} ({column.name})") from None


def _integer_bounds(column: Column, dialect: str | None) -> tuple[tuple[str, int], ...]:
    """The range the source enforces on the column's type (the validator's `range:` bounds), else INT64's."""
    bounds = integer_range(column.source_type, dialect) if dialect else None
    return (("ge", bounds[0]), ("le", bounds[1])) if bounds else _INT64_BOUNDS


def _constraints(column: Column, py_type: _PyType, dialect: str | None) -> tuple[tuple[str, int], ...]:
    bq_type = column.bq_type.upper()
    if py_type is _INT:
        return _integer_bounds(column, dialect)
    if bq_type in _NUMERIC_SCALE:
        scale = column.scale if column.scale is not None else _NUMERIC_SCALE[bq_type]
        if column.precision is not None:
            return (("max_digits", column.precision), ("decimal_places", scale))
        return (("decimal_places", scale),)
    if py_type.runtime in (str, bytes) and column.length:
        return (("max_length", column.length),)
    return ()


# Names the generated module uses: a field of that name would shadow them inside the class body.
GENERATED_MODULE_NAMES = frozenset({"Annotated", "Any", "BaseModel", "ConfigDict", "Field", "Int64", "datetime",
                                    "decimal", "uuid",
                                    # builtins the annotations name: a field `str` would hide the type
                                    "bool", "bytes", "float", "int", "str"})


def _usable(name: str) -> bool:
    return (name.isidentifier() and name.isascii() and not keyword.iskeyword(name) and not name.startswith("_")
            and not name.startswith("model_") and not hasattr(BaseModel, name) and name not in GENERATED_MODULE_NAMES)


def _python_name(column: Column) -> str:
    """The source name if usable, else a readable ASCII spelling of it (``order id`` -> ``order_id``),
    else one derived from the BigQuery name; suffixed until usable."""
    if _usable(column.name):
        return column.name
    readable = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z]", "_", column.name)).strip("_")
    candidate = readable or column.bq_name.lstrip("_") or "column"
    if candidate[0].isdigit():
        candidate = "c_" + candidate
    if candidate.startswith("model_"):
        candidate = "f_" + candidate
    while not _usable(candidate):
        candidate += "_"
    return candidate


def field_specs(schema: TableSchema, dialect: str | None = None) -> list[FieldSpec]:
    """The fields of a table's row model, in column order, with unique Python names. With the source's
    `dialect` (SQLAlchemy's name), integers are bounded as that source bounds its types, as the
    validator's range checks do; without it, by INT64 only."""
    specs, taken = [], set()
    for column in schema.columns:
        name = base = _python_name(column)
        suffix = 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        py_type = _python_type(column)
        specs.append(FieldSpec(name=name, alias=None if name == column.name else column.name, py_type=py_type,
                               constraints=_constraints(column, py_type, dialect), nullable=column.nullable,
                               column=column))
    return specs


def class_name_for(table: str) -> str:
    """A CamelCase class name for a table name: ``customer_orders`` -> ``CustomerOrders``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", table) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Row"
    name = name if name[0].isalpha() else "T" + name
    return name + "Row" if name in GENERATED_MODULE_NAMES or keyword.iskeyword(name) else name


def _one_line(text: str) -> str:
    """Catalog text fit for a comment or docstring: one line, printable."""
    return "".join(char if char.isprintable() else "?" for char in " ".join(text.split()))


def docstring_literal(text: str, indent: str = "") -> str:
    """A docstring literal for catalog-derived text: triple-quoted when that is safe, else repr()."""
    text = _one_line(text)
    if '"' in text or "\\" in text or not text.isprintable():
        return indent + repr(text)
    return f'{indent}"""{text}"""'


def model_source(schema: TableSchema, class_name: str, source_table: str, dialect: str | None = None) -> str:
    """Python source of a module defining the row model of `source_table` (see the module docstring)."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name) or class_name in GENERATED_MODULE_NAMES:
        raise ValueError(f"invalid class name {class_name!r}")
    specs = field_specs(schema, dialect)
    modules = sorted({s.py_type.module for s in specs if s.py_type.module and s.py_type.module != "typing"})
    typing_names = ["Annotated"] if any(s.constraints for s in specs) else []
    if any(s.py_type.runtime is Any for s in specs):
        typing_names.append("Any")
    pydantic_names = ["BaseModel", "ConfigDict"]
    if any(s.constraints or s.alias for s in specs):
        pydantic_names.append("Field")
    lines = [
        docstring_literal(f"Row model of {source_table}, generated by matrix-sync from the discovered source schema."),
        "",
        "# Do not edit: regenerate with `matrix-sync generate-models`. Values are checked as the",
        "# source driver returns them: types, NOT NULL, decimal digits and scale, text length.",
        *(f"import {m}" for m in modules),
        *([f"from typing import {', '.join(typing_names)}"] if typing_names else []),
        "",
        f"from pydantic import {', '.join(pydantic_names)}",
        "",
    ]
    if any(s.is_int64 for s in specs):
        lines += ["Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]", ""]
    lines += [
        "",
        f"class {class_name}(BaseModel):",
        docstring_literal(f"One row of {source_table}.", indent="    "),
        "",
        '    model_config = ConfigDict(extra="forbid", frozen=True)',
        "",
    ]
    for spec in specs:
        where = f"{spec.column.name}: " if spec.alias else ""
        comment = _one_line(f"{where}{spec.column.source_type} -> {spec.column.bq_type}")
        lines.append(f"    {spec.name}: {spec.annotation_source()}{spec.default_source()}  # {comment}")
    return "\n".join(lines) + "\n"


def build_model(schema: TableSchema, class_name: str = "Row", source_table: str | None = None,
                dialect: str | None = None) -> type[BaseModel]:
    """The class `model_source` spells, created at runtime (with its docstring when `source_table`
    is given, so even the JSON schemas match)."""
    fields: dict[str, Any] = {s.name: (s.annotation(), s.field_info()) for s in field_specs(schema, dialect)}
    doc = _one_line(f"One row of {source_table}.") if source_table else None
    return create_model(class_name, __config__=MODEL_CONFIG, __doc__=doc, **fields)


def _reason(specs: list[FieldSpec], error: dict[str, Any], offset: int = 0) -> str:
    """'credit_limit: Decimal input should have no more than 2 decimal places' for one pydantic error."""
    location = error["loc"][offset:]
    if not location or not isinstance(location[0], int) or location[0] >= len(specs):
        return f"row: {error['msg']}"
    spec = specs[location[0]]
    if error.get("input", ...) is None and not spec.nullable:
        return f"{spec.column.name}: NULL in a NOT NULL column"
    beyond = _beyond_bigquery(spec, error.get("input"))
    return f"{spec.column.name}: {beyond or error['msg']}"


_TEMPORAL = (datetime.date, datetime.datetime, datetime.time)
_YEAR_PAST_9999 = re.compile(r"\d{5,}-")


def _beyond_bigquery(spec: FieldSpec, value: object) -> str | None:
    """What is wrong with a date or time the driver left as its text because no Python value holds it
    (PostgreSQL's 'infinity', a BC date, a year past 9999, 24:00:00: `shared.extractor.dbapi_stream`),
    or None for any other value."""
    if spec.py_type.runtime not in _TEMPORAL or not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text.endswith("infinity"):
        return f"{value!r} is not a date/time BigQuery can hold"
    if text.endswith(" bc"):
        return f"{value!r} is not a date/time BigQuery can hold: a date before year 1"
    if _YEAR_PAST_9999.match(text):
        return f"{value!r} is not a date/time BigQuery can hold: a date after year 9999"
    if spec.py_type.runtime is datetime.time and text.startswith("24:"):
        return f"{value!r} is not a time BigQuery can hold: its times end at 23:59:59.999999"
    return None


def _row_type(specs: list[FieldSpec]) -> object:
    return tuple[tuple(s.annotation() for s in specs)]  # type: ignore[misc]


def row_validator(schema: TableSchema, dialect: str | None = None) -> Callable[[tuple], str | None]:
    """A check of one row (driver values in schema column order): None when valid, else a short
    reason naming the first offending column. Same verdicts as `build_model`, without the dict."""
    specs = field_specs(schema, dialect)
    adapter = TypeAdapter(_row_type(specs))
    validate = adapter.validate_python
    width = len(specs)

    def check(row: tuple) -> str | None:
        if len(row) != width:
            return f"row: {len(row)} values for {width} columns"
        try:
            validate(row)
        except ValidationError as error:
            return _reason(specs, error.errors(include_url=False)[0])
        return None

    return check


def chunk_validator(schema: TableSchema, dialect: str | None = None) -> Callable[[Sequence[tuple]], dict[int, str]]:
    """`row_validator` for a whole chunk in one pydantic call: {row index: reason} of the bad rows."""
    specs = field_specs(schema, dialect)
    adapter = TypeAdapter(list[_row_type(specs)])  # type: ignore[misc]
    width = len(specs)

    def check(rows: Sequence[tuple]) -> dict[int, str]:
        reasons = {i: f"row: {len(row)} values for {width} columns" for i, row in enumerate(rows) if len(row) != width}
        try:
            adapter.validate_python(rows if isinstance(rows, list) else list(rows))
        except ValidationError as error:
            for item in error.errors(include_url=False):
                index = item["loc"][0]
                if isinstance(index, int) and index not in reasons:
                    reasons[index] = _reason(specs, item, offset=1)
        return dict(sorted(reasons.items()))

    return check
