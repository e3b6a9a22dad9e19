"""Per-table settings documents (`MATRIX_VALIDATION`, `MATRIX_RECONCILE`): one JSON object with
`default` settings and `tables` overriding them, by BigQuery table name or full table id::

    {"default": {"deep": false}, "tables": {"customers": {"deep": true}}}
"""
from __future__ import annotations

import json
from collections.abc import Mapping


def overlaid(document: str | Mapping[str, object], table_id: str, variable: str,
             error: type[ValueError]) -> dict[str, object]:
    """The document's defaults overlaid with its entries for the table; `error` names what is not
    an object where an object belongs."""
    try:
        data = json.loads(document) if isinstance(document, str) else dict(document)
    except ValueError as exc:
        raise error(f"{variable} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= {"default", "tables"}:
        raise error(f"{variable} must be an object with 'default' and/or 'tables'")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise error(f"{variable}: 'tables' must be an object of table name -> settings, not {_kind(tables)}")
    merged: dict[str, object] = {}
    for where, entry in [("default", data.get("default")),
                         *((f"tables.{key}", tables.get(key)) for key in (table_id.split(".")[-1], table_id))]:
        if entry is not None and not isinstance(entry, dict):
            raise error(f"{variable}: '{where}' must be an object of settings, not {_kind(entry)}")
        merged.update(entry or {})
    return merged


def _kind(value: object) -> str:
    return f"{type(value).__name__} {json.dumps(value)[:40]}"
