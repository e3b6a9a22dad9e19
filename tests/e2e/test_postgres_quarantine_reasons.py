"""A PostgreSQL date or time BigQuery cannot hold ('infinity', a BC date, a year past 9999, 24:00:00)
is quarantined with a reason that names its column and says what is wrong with the value, through
either reader, into the snapshot's quarantine file. Against the real server on 127.0.0.1:5432."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from matrix_sync.cycle import extract_all
from matrix_sync.stack import LocalStack
from shared import gcs
from shared.manifest import parse_manifest
from tests.integration.test_postgres_driver_values import _execute, table  # noqa: F401 - the fixture too
from tests.support import ensure_resources, write_config

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
HELD = "is not a date/time BigQuery can hold"
# id -> (column, the value PostgreSQL holds, the reason its row is quarantined with)
BEYOND_BIGQUERY = {
    2: ("d", "infinity", f"ValueError: d: 'infinity' {HELD}"),
    3: ("ts", "-infinity", f"ValueError: ts: '-infinity' {HELD}"),
    4: ("tz", "infinity", f"ValueError: tz: 'infinity' {HELD}"),
    5: ("d", "0044-03-15 BC", f"ValueError: d: '0044-03-15 BC' {HELD}: a date before year 1"),
    6: ("ts", "10000-01-01 00:00:00", f"ValueError: ts: '10000-01-01 00:00:00' {HELD}: a date after year 9999"),
    7: ("tz", "2024-01-01 00:00:00+00 BC", f"ValueError: tz: '2024-01-01 00:00:00+00 BC' {HELD}: "
                                           "a date before year 1"),
}
TIME_OF_DAY_END = (9, ("t", "24:00:00", "ValueError: t: '24:00:00' is not a time BigQuery can hold: "
                                        "its times end at 23:59:59.999999"))


def _quarantine_reasons(manifest_uri: str) -> dict[int, str]:
    bucket, name = gcs.split_uri(manifest_uri)
    manifest = parse_manifest(gcs.read(bucket, name), bucket=bucket, prefix=name.rsplit("/", 1)[0])
    entries = [json.loads(line) for uri in manifest.quarantine.uris for line in gcs.read(*gcs.split_uri(uri)).splitlines()]
    return {int(entry["key"]["id"]): entry["reason"] for entry in entries}


@pytest.mark.parametrize("with_time", [False, True], ids=["arrow-reader", "dbapi-reader"])
def test_a_date_or_time_bigquery_cannot_hold_is_quarantined_saying_what_the_value_is(
        stack: LocalStack, tmp_path: Path, unique_name: str, table: str, with_time: bool) -> None:  # noqa: F811 - the imported fixture
    # PostgreSQL time is not read through ADBC: a time column sends the table through psycopg2
    _execute(f"CREATE TABLE {table} (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz"
             + (", t time)" if with_time else ")"))
    _execute(f"INSERT INTO {table} (id, d, ts, tz) VALUES (1, '2024-02-29', '9999-12-31 23:59:59', '2024-01-01 12:00:00+05:30')")
    expected = {**BEYOND_BIGQUERY, **dict([TIME_OF_DAY_END])} if with_time else BEYOND_BIGQUERY
    for key, (column, value, _reason) in expected.items():
        _execute(f"INSERT INTO {table} (id, {column}) VALUES (%s, %s)", (key, value))
    config = write_config(tmp_path / "config.yaml", url=URL, tables={table: ["id"]}, suffix=unique_name)
    ensure_resources(stack, config)

    (result,) = extract_all(config)

    assert (result.rows, result.quarantined) == (1, len(expected))
    assert _quarantine_reasons(result.manifest_uri) == {key: reason for key, (_c, _v, reason) in expected.items()}
