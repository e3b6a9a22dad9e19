"""Test-only instrumentation of the loader server started by tests/reliability (never deployed).

With MATRIX_FAULT_CONTROL_DIR set (this directory on the server's PYTHONPATH), the loader holds
still at one point of its work, chosen by writing the point's name to <dir>/armed:

- mid_load:       staging tables loaded, load transaction not begun (shared.loader.faults.AFTER_STAGE)
- mid_merge:      the load transaction ran its MERGE and was aborted before COMMIT (the existing
                  MATRIX_FAULT=during_merge script), the failure not yet returned to Pub/Sub
- before_publish: committed, `table-loaded` not yet published (shared.loader.faults.BEFORE_PUBLISH)

Reaching the point renames `armed` to `reached` (one shot) and waits for <dir>/release, so the test
can kill or restart any service while the loader is exactly there, then let it go on."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CONTROL = os.environ.get("MATRIX_FAULT_CONTROL_DIR")
_HOLD_LIMIT_S = 300.0


def _armed(point: str) -> bool:
    try:
        return (Path(str(_CONTROL)) / "armed").read_text().strip() == point
    except OSError:
        return False


def _take(point: str) -> bool:
    control = Path(str(_CONTROL))
    if not _armed(point):
        return False
    try:
        (control / "armed").rename(control / "reached")
    except OSError:  # another delivery took it first
        return False
    return True


def _hold() -> None:
    release = Path(str(_CONTROL)) / "release"
    deadline = time.monotonic() + _HOLD_LIMIT_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    release.unlink(missing_ok=True)


def _install() -> None:
    from shared import bigquery
    from shared.loader import faults

    inject, requested, script = faults.inject, faults.requested, bigquery.script
    holds = {faults.AFTER_STAGE: "mid_load", faults.BEFORE_PUBLISH: "before_publish"}

    def held_inject(point: str) -> None:
        if point in holds and _take(holds[point]):
            _hold()
        inject(point)

    def merge_aborts(point: str) -> bool:
        return requested(point) or (point == faults.DURING_MERGE and _armed("mid_merge"))

    def held_script(project: str, sql: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return script(project, sql, *args, **kwargs)
        except Exception:
            if "MATRIX_FAULT=during_merge" in sql and _take("mid_merge"):
                _hold()
            raise

    patched: dict[str, Callable[..., Any]] = {"inject": held_inject, "requested": merge_aborts}
    for name, function in patched.items():
        setattr(faults, name, function)
    bigquery.script = held_script  # type: ignore[assignment]


if _CONTROL:
    _install()
