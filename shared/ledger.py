"""The ledger: one row per snapshot the loader saw, applied or not, in the target's dataset.

An `applied` row is written only inside the load transaction, so it exists exactly when the
snapshot's changes are committed. `published_at` is set once `table-loaded` has been published.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from shared import bigquery as bq
from shared.identifiers import quote_bigquery
from shared.topology import LEDGER_TABLE

APPLIED = "applied"
DUPLICATE = "duplicate"
STALE = "stale"
REFUSED = "refused"
OPERATOR_DELETE, OPERATOR_TRUNCATE = "operator-delete", "operator-truncate"  # rows removed by hand
OPERATOR_STATUS_PREFIX = "operator-"

FIELDS = [
    bigquery.SchemaField("table_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("source_table", "STRING"),
    bigquery.SchemaField("run_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("sequence", "INT64"),
    bigquery.SchemaField("mode", "STRING"),
    bigquery.SchemaField("status", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("manifest_uri", "STRING"),
    bigquery.SchemaField("rows_inserted", "INT64"),
    bigquery.SchemaField("rows_updated", "INT64"),
    bigquery.SchemaField("rows_deleted", "INT64"),
    bigquery.SchemaField("source_rows", "INT64"),
    bigquery.SchemaField("bytes", "INT64"),
    bigquery.SchemaField("extracted_at", "TIMESTAMP"),
    bigquery.SchemaField("recorded_at", "TIMESTAMP"),
    bigquery.SchemaField("message", "STRING"),
    bigquery.SchemaField("key_columns", "STRING"),
    bigquery.SchemaField("published_at", "TIMESTAMP"),
    # An applied snapshot's data columns in the order its row hashes cover them (a JSON array).
    bigquery.SchemaField("hashed_columns", "STRING"),
]
KEY_SEPARATOR = ","


@dataclass(frozen=True)
class Entry:
    run_id: str
    sequence: int
    status: str
    published: bool
    key_columns: tuple[str, ...] | None
    hashed_columns: tuple[str, ...] | None = None
    manifest_uri: str | None = None


@dataclass(frozen=True)
class History:
    """What the ledger knows that decides a snapshot's fate: the rows of the snapshot itself and of
    its base, and the newest applied snapshot of the table."""

    entries: tuple[Entry, ...]
    latest: Entry | None

    def find(self, run_id: str | None, status: str) -> Entry | None:
        return next((e for e in self.entries if e.run_id == run_id and e.status == status), None)


def ledger_id(project: str, dataset: str) -> str:
    return f"{project}.{dataset}.{LEDGER_TABLE}"


def quoted(project: str, dataset: str) -> str:
    return quote_bigquery(project, dataset, LEDGER_TABLE)


def ensure(project: str, dataset: str) -> None:
    """Creates the ledger, or adds the columns a ledger made by an older loader lacks (checked once
    per process until a query finds it gone: see bigquery.ensure_table)."""
    bq.ensure_table(ledger_id(project, dataset), FIELDS, clustering=["table_id"])


def _params(**values: tuple[str, object]) -> list[bigquery.ScalarQueryParameter]:
    return [bigquery.ScalarQueryParameter(name, kind, value) for name, (kind, value) in values.items()]


def record_once(project: str, dataset: str, row: dict[str, object], *, same_message: bool = False) -> bool:
    """A ledger row outside a load transaction (refused, stale), unless the same snapshot already has
    one with that status (and message); True when written. Redeliveries so leave one row, one alert."""
    ensure(project, dataset)
    message = " AND message = @message" if same_message else ""
    existing = bq.query(
        project,
        f"SELECT 1 FROM {quoted(project, dataset)} WHERE table_id = @table_id AND run_id = @run_id "
        f"AND status = @status{message} LIMIT 1",
        _params(table_id=("STRING", row["table_id"]), run_id=("STRING", row["run_id"]), status=("STRING", row["status"]),
                **({"message": ("STRING", row.get("message"))} if same_message else {})),
    )
    if existing:
        return False
    bq.insert_rows(ledger_id(project, dataset), FIELDS, [row])
    return True


def applied_since_truncate(ledger: str, table_id: str) -> str:
    """A condition on ledger rows: the table's applied snapshots since an operator last truncated it
    (`table_id` a SQL expression). What was applied before no longer orders the next snapshots, so a
    truncate and a full snapshot get a table past an applied row of impossible sequence (a forged
    manifest's, a hand-edited ledger's)."""
    truncated = (f"IFNULL((SELECT MAX(recorded_at) FROM {ledger} WHERE table_id = {table_id} "
                 f"AND status = '{OPERATOR_TRUNCATE}'), TIMESTAMP '0001-01-01 00:00:00+00')")
    return f"table_id = {table_id} AND status = '{APPLIED}' AND recorded_at > {truncated}"


def history(project: str, dataset: str, table_id: str, run_id: str, base_run_id: str | None = None) -> History:
    """The rows of the run and its base, and the newest applied row since the table's last truncate
    (`applied_since_truncate`), in one query. A ledger dropped
    since this process ensured it is created again (as `ensure` would have) and read once more."""
    columns = "run_id, sequence, status, published_at, key_columns, hashed_columns, manifest_uri"
    table = quoted(project, dataset)
    sql = (f"SELECT FALSE AS latest, {columns} FROM {table} WHERE table_id = @table_id AND run_id IN UNNEST(@run_ids)\n"
           f"UNION ALL\n(SELECT TRUE AS latest, {columns} FROM {table} "
           f"WHERE {applied_since_truncate(table, '@table_id')} ORDER BY sequence DESC, recorded_at DESC LIMIT 1)")
    params = [bigquery.ScalarQueryParameter("table_id", "STRING", table_id),
              bigquery.ArrayQueryParameter("run_ids", "STRING", [r for r in (run_id, base_run_id) if r])]
    try:
        rows = bq.query(project, sql, params)
    except gexc.NotFound:
        ensure(project, dataset)
        rows = bq.query(project, sql, params)
    latest = [r for r in rows if r["latest"]]
    return History(tuple(_entry(r) for r in rows if not r["latest"]), _entry(latest[0]) if latest else None)


def _entry(row: bigquery.Row) -> Entry:
    keys, hashed = row["key_columns"], row["hashed_columns"]
    return Entry(str(row["run_id"]), int(row["sequence"] or 0), str(row["status"]), row["published_at"] is not None,
                 tuple(keys.split(KEY_SEPARATOR)) if keys else None, tuple(json.loads(hashed)) if hashed else None,
                 row.get("manifest_uri"))


def mark_published(project: str, dataset: str, table_id: str, run_id: str) -> None:
    bq.query(
        project,
        f"UPDATE {quoted(project, dataset)} SET published_at = CURRENT_TIMESTAMP() "
        f"WHERE table_id = @table_id AND run_id = @run_id AND status = '{APPLIED}' AND published_at IS NULL",
        _params(table_id=("STRING", table_id), run_id=("STRING", run_id)),
    )


def applied_run(project: str, dataset: str, table_id: str, run_id: str) -> dict[str, object] | None:
    rows = bq.query(
        project,
        f"SELECT * FROM {quoted(project, dataset)} WHERE table_id = @table_id AND run_id = @run_id "
        f"AND status = '{APPLIED}' ORDER BY recorded_at DESC LIMIT 1",
        _params(table_id=("STRING", table_id), run_id=("STRING", run_id)),
    )
    return dict(rows[0].items()) if rows else None


def latest_applied(project: str, dataset: str, table_id: str, *,
                   since_truncate: bool = False) -> dict[str, object] | None:
    """The newest applied row: of all (what `status` shows the verdicts of, marked outdated after a
    truncate), or `since_truncate` (what orders snapshots, see `applied_since_truncate`)."""
    table = quoted(project, dataset)
    applied = (applied_since_truncate(table, "@table_id") if since_truncate
               else f"table_id = @table_id AND status = '{APPLIED}'")
    rows = bq.query(
        project,
        f"SELECT * FROM {table} WHERE {applied} ORDER BY sequence DESC LIMIT 1",
        _params(table_id=("STRING", table_id)),
    )
    return dict(rows[0].items()) if rows else None


def latest_event(project: str, dataset: str, table_id: str) -> dict[str, object] | None:
    """The newest ledger row of the table that says something about its content: an applied
    snapshot, a refusal or an operator's change (not the skipped stale or duplicate deliveries)."""
    rows = bq.query(
        project,
        f"SELECT * FROM {quoted(project, dataset)} WHERE table_id = @table_id "
        f"AND status NOT IN ('{STALE}', '{DUPLICATE}') ORDER BY recorded_at DESC LIMIT 1",
        _params(table_id=("STRING", table_id)),
    )
    return dict(rows[0].items()) if rows else None


def applied_before(project: str, dataset: str, table_id: str, sequence: int, deltas: int) -> list[dict[str, object]]:
    """The newest applied run of the table older than `sequence`, then at most `deltas` applied delta
    runs older than that one; newest first (run_id, sequence, mode, manifest_uri)."""
    table = quoted(project, dataset)
    applied = f"table_id = @table_id AND status = '{APPLIED}'"
    rows = bq.query(
        project,
        f"SELECT run_id, sequence, mode, manifest_uri FROM {table} WHERE {applied} AND sequence < @sequence "
        f"AND (mode = 'delta' OR sequence = (SELECT MAX(sequence) FROM {table} WHERE {applied} "
        f"AND sequence < @sequence)) ORDER BY sequence DESC LIMIT {int(deltas) + 1}",
        _params(table_id=("STRING", table_id), sequence=("INT64", sequence)),
    )
    return [dict(r.items()) for r in rows]
