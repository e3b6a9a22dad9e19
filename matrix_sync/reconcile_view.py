"""`matrix-sync reconcile`'s table: one line per certificate, and each certificate's message in full
below it (a message is a sentence; a table column would cut it); and the line for each table that
could not be reconciled, naming why and what to do."""
from __future__ import annotations

from google.api_core.exceptions import NotFound
from rich.table import Table

from matrix_sync.errors import bigquery_timeout_line
from shared import bigquery as bq
from shared import ledger
from shared.manifest import ManifestError
from shared.reconciler.certificate import Certificate

_COLUMNS = ("table", "run", "mode", "verdict", "missing", "extra", "changed", "duplicate", "stale hashes",
            "deleted", "requested")


def _name(certificate: Certificate) -> str:
    return _table_name(certificate.table_id)


def _table_name(table_id: str) -> str:
    return table_id.split(".")[-1]


def certificates_table(certificates: list[Certificate], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in _COLUMNS:
        text = heading in ("table", "run", "mode", "verdict")
        table.add_column(heading, justify="left" if text else "right")
    for c in certificates:
        requested = "full snapshot" if c.full_snapshot_requested else f"{c.keys_requested} key(s)"
        table.add_row(_name(c), c.run_id, c.mode, c.verdict, str(c.missing_rows), str(c.extra_rows),
                      str(c.changed_rows), str(c.duplicate_rows), str(c.stale_hash_rows), str(c.rows_deleted),
                      requested, style="" if c.clean else "bold red")
    return table


def certificate_messages(certificates: list[Certificate]) -> list[str]:
    """``table: message`` for each certificate that carries one."""
    return [f"{_name(c)}: {c.message.strip().rstrip(';')}" for c in certificates if c.message.strip()]


def not_reconciled_line(table_id: str, error: Exception) -> str:
    """``table: not reconciled, why: what to do`` for a table whose check raised `error`."""
    return f"{_table_name(table_id)}: not reconciled, {_why_not_reconciled(table_id, error)}"


def _why_not_reconciled(table_id: str, error: Exception) -> str:
    timed_out = bigquery_timeout_line(error)
    if timed_out is not None:
        return timed_out
    if isinstance(error, NotFound) and bq.get_table(table_id) is None:  # not some other object gone meanwhile
        return f"the BigQuery table {table_id} does not exist: {recreate_hint(table_id)}"
    if isinstance(error, ManifestError):
        return (f"the manifest of its last applied snapshot {_last_manifest_uri(table_id)} cannot be read ({error}): "
                f"{full_cycle_hint(table_id)}")
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    return f"{type(error).__name__}: {first_line} (the stack trace is in the log file)"


def recreate_hint(table_id: str) -> str:
    """What brings back a table dropped in BigQuery: the next snapshot is full when the table is gone."""
    return f"the next cycle re-creates and reloads it (matrix-sync run --table {_table_name(table_id)})"


def full_cycle_hint(table_id: str) -> str:
    name = _table_name(table_id)
    return f"run a full cycle (matrix-sync extract --full --table {name}, then let it load)"


def _last_manifest_uri(table_id: str) -> str:
    """Where the manifest of the table's newest applied snapshot is (the error parsing it names no place)."""
    project, dataset, _ = table_id.split(".")
    applied = ledger.latest_applied(project, dataset, table_id)
    return str(applied["manifest_uri"]) if applied and applied.get("manifest_uri") else "(not in the ledger)"
