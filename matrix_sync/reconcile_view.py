"""`matrix-sync reconcile`'s table: one line per certificate, and each certificate's message in full
below it (a message is a sentence; a table column would cut it)."""
from __future__ import annotations

from rich.table import Table

from shared.reconciler.certificate import Certificate

_COLUMNS = ("table", "run", "mode", "verdict", "missing", "extra", "changed", "duplicate", "stale hashes",
            "deleted", "requested")


def _name(certificate: Certificate) -> str:
    return certificate.table_id.split(".")[-1]


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
