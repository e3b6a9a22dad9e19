"""`matrix-sync reconcile`'s table: one line per certificate."""
from __future__ import annotations

from rich.table import Table

from shared.reconciler.certificate import Certificate

_COLUMNS = ("table", "run", "mode", "verdict", "missing", "extra", "changed", "duplicate", "stale hashes",
            "deleted", "requested", "message")


def certificates_table(certificates: list[Certificate], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in _COLUMNS:
        text = heading in ("table", "run", "mode", "verdict", "message")
        table.add_column(heading, justify="left" if text else "right")
    for c in certificates:
        requested = "full snapshot" if c.full_snapshot_requested else f"{c.keys_requested} key(s)"
        table.add_row(c.table_id.split(".")[-1], c.run_id, c.mode, c.verdict, str(c.missing_rows), str(c.extra_rows),
                      str(c.changed_rows), str(c.duplicate_rows), str(c.stale_hash_rows), str(c.rows_deleted),
                      requested, c.message[:80], style="" if c.clean else "bold red")
    return table
