"""What `status` prints: a run id whole at the width piped output gets (operators copy it into
other commands), however long the verdicts beside it; an outcome recorded while status was
reading is "0 s" old, never negative."""
from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from matrix_sync.operator import status_table
from matrix_sync.operator_views import _age

RUN = "20261207T130701870012Z-3f9a1c"


def test_a_run_id_is_shown_whole_at_the_piped_width() -> None:
    row = ("dbo.CustomerSubscriptionDeliveries", RUN, "12.6 min", "1,204,332",
           "failed (12.6 min ago): table 'dbo.CustomerSubscriptionDeliveries' not found in the source",
           "applied (12.6 min ago)", "mismatch (76 -> 75 rows: 1 missing, 3 changed; keys requested again)",
           "failed: quarantined_rows, not_null_email, freshness")
    out = io.StringIO()
    Console(file=out, width=132, markup=False).print(status_table("status x.yaml", [(row[0], row)], [row[0]]))
    assert RUN in out.getvalue()


def test_a_moment_after_now_is_just_now() -> None:
    now = dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC)
    assert _age(now + dt.timedelta(seconds=3), now) == "0 s"
    assert _age(now - dt.timedelta(seconds=90), now) == "1.5 min"
