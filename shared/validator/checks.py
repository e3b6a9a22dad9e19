"""Named data checks over a loaded table, each computed by BigQuery and returned as a typed result."""
from __future__ import annotations

from dataclasses import dataclass

from shared import bigquery as bq
from shared.identifiers import quote_bigquery as q
from shared.manifest import Manifest


@dataclass(frozen=True)
class CheckResult:
    check_name: str
    passed: bool
    observed: str
    expected: str
    message: str = ""


def run_checks(manifest: Manifest) -> list[CheckResult]:
    schema = manifest.table_schema
    target = manifest.target
    table = q(*target.table_id.split("."))
    keys = [q(c.bq_name) for c in schema.key_columns]
    required = [c for c in schema.columns if not c.nullable and c.name not in schema.key]
    null_counts = "".join(f", COUNTIF({q(c.bq_name)} IS NULL) AS `nulls_{i}`" for i, c in enumerate(required))
    profile = bq.query(target.project, (
        f"SELECT COUNT(*) AS row_count, COUNTIF({' OR '.join(f'{k} IS NULL' for k in keys)}) AS key_nulls"
        f"{null_counts} FROM {table}"
    ))[0]
    duplicates = bq.query(target.project, (
        f"SELECT COUNT(*) AS duplicate_keys FROM (SELECT {', '.join(keys)} FROM {table} "
        f"GROUP BY {', '.join(keys)} HAVING COUNT(*) > 1)"
    ))[0]["duplicate_keys"]
    checks = [
        CheckResult("row_count", profile["row_count"] == manifest.row_count,
                    str(profile["row_count"]), str(manifest.row_count)),
        CheckResult("key_unique", duplicates == 0, f"{duplicates} duplicated key(s)", "0"),
        CheckResult("key_not_null", profile["key_nulls"] == 0, f"{profile['key_nulls']} row(s)", "0"),
        CheckResult("quarantined_rows", manifest.quarantine.rows == 0, str(manifest.quarantine.rows), "0",
                    "; ".join(manifest.quarantine.uris)[:1000]),
    ]
    for i, column in enumerate(required):
        nulls = profile[f"nulls_{i}"]
        checks.append(CheckResult(f"not_null:{column.name}", nulls == 0, f"{nulls} row(s)", "0"))
    return checks
