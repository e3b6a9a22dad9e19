"""Crash injection for tests only: MATRIX_FAULT=after_stage|during_merge|before_publish makes the
loader fail at that point, as if the function died there. Unset (the default) in every deployment."""
from __future__ import annotations

import os

FAULT_VARIABLE = "MATRIX_FAULT"
AFTER_STAGE = "after_stage"        # staging tables loaded, load transaction not started
DURING_MERGE = "during_merge"      # inside the load transaction, after the MERGE, before COMMIT
BEFORE_PUBLISH = "before_publish"  # committed, `table-loaded` not yet published
POINTS = (AFTER_STAGE, DURING_MERGE, BEFORE_PUBLISH)


class InjectedFault(RuntimeError):
    """Raised where MATRIX_FAULT asks; never caught by the loader."""


def requested(point: str) -> bool:
    return os.environ.get(FAULT_VARIABLE, "").strip() == point


def inject(point: str) -> None:
    if requested(point):
        raise InjectedFault(f"{FAULT_VARIABLE}={point}")
