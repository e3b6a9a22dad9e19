"""Writes infra/schemas/<table>.json, the BigQuery schemas Terraform gives the ledger and results
tables, from the fields the Python code creates them with (shared/ledger.py, shared/results.py).

    python infra/schemas/generate.py          # rewrite the files
    python infra/schemas/generate.py --check  # exit 1 if a file differs (tests/infra does this too)

Types are written with the names the BigQuery API reports back (INTEGER, BOOLEAN, FLOAT, RECORD),
so Terraform sees no difference between what it sent and what it reads.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from shared import ledger, results  # noqa: E402
from shared.topology import LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE  # noqa: E402

API_TYPES = {"INT64": "INTEGER", "BOOL": "BOOLEAN", "FLOAT64": "FLOAT", "STRUCT": "RECORD"}


def tables() -> dict[str, list]:
    return {
        LEDGER_TABLE: ledger.FIELDS,
        RECONCILIATION_TABLE: results.RECONCILIATION_FIELDS,
        VALIDATION_TABLE: results.VALIDATION_FIELDS,
    }


def schema_json(fields: list) -> str:
    return json.dumps([_field(f.to_api_repr()) for f in fields], indent=2) + "\n"


def _field(api: dict) -> dict:
    field = {"name": api["name"], "type": API_TYPES.get(api["type"], api["type"]), "mode": api.get("mode") or "NULLABLE"}
    if api.get("description"):
        field["description"] = api["description"]
    if api.get("fields"):
        field["fields"] = [_field(f) for f in api["fields"]]
    return field


def expected() -> dict[Path, str]:
    return {HERE / f"{name}.json": schema_json(fields) for name, fields in tables().items()}


def main(argv: list[str]) -> int:
    stale = [path for path, text in expected().items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is out of date: run python infra/schemas/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
