"""What to do with a snapshot, given the ledger: apply it, or recognise it as a duplicate, as stale,
or as a delta whose base is not (or no longer) what the table holds. The load script asks the same
questions again inside its transaction; this early answer only saves staging work."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.ledger import APPLIED, Entry, History
from shared.manifest import Manifest


class Verdict(StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    STALE = "stale"
    WAIT_FOR_BASE = "wait_for_base"        # transient: the base may still arrive
    BASE_SUPERSEDED = "base_superseded"    # terminal: the table moved past the base another way


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    applied: Entry | None = None  # the snapshot's own applied row, for a duplicate


def decide(manifest: Manifest, history: History) -> Decision:
    own = history.find(manifest.run_id, APPLIED)
    if own is not None:
        return Decision(Verdict.DUPLICATE, f"run {manifest.run_id} is already applied", own)
    latest = history.latest
    if latest is not None and latest.sequence >= manifest.sequence:
        return Decision(Verdict.STALE, f"a newer snapshot is already applied: run {latest.run_id}, "
                                       f"sequence {latest.sequence} >= {manifest.sequence}")
    if manifest.delta is None:
        return Decision(Verdict.APPLY)
    base = manifest.delta.base_run_id
    if latest is not None and latest.run_id == base:
        return Decision(Verdict.APPLY)
    if history.find(base, APPLIED) is not None:
        return Decision(Verdict.BASE_SUPERSEDED,
                        f"delta on run {base}, but the table has since moved to run {latest.run_id if latest else '?'}; "
                        "a full snapshot is needed")
    return Decision(Verdict.WAIT_FOR_BASE, f"delta on run {base}, which is not applied yet")
