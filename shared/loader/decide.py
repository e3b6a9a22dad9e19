"""What to do with a snapshot, given the ledger: apply it, or recognise it as a duplicate, as stale,
as another deployment's, or as a delta whose base is not (or no longer) what the table holds. The
load script asks the same questions again inside its transaction; this early answer only saves
staging work."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.ledger import APPLIED, Entry, History
from shared.manifest import Manifest
from shared.topology import manifest_root


class Verdict(StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    STALE = "stale"
    WAIT_FOR_BASE = "wait_for_base"        # transient: the base may still arrive
    BASE_SUPERSEDED = "base_superseded"    # terminal: the table moved past the base another way
    FOREIGN = "foreign"                    # terminal: the table is loaded from another deployment's snapshots


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    applied: Entry | None = None  # the snapshot's own applied row, for a duplicate


def decide(manifest: Manifest, history: History, manifest_uri: str, *, table_exists: bool) -> Decision:
    own = history.find(manifest.run_id, APPLIED)
    if own is not None:
        return Decision(Verdict.DUPLICATE, f"run {manifest.run_id} is already applied", own)
    latest = history.latest
    foreign = _foreign_owner(manifest_uri, latest) if table_exists else None
    if foreign:
        return Decision(Verdict.FOREIGN, foreign)
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


def _foreign_owner(manifest_uri: str, latest: Entry | None) -> str:
    """Why the snapshot is refused when the table's newest applied snapshot came from another bucket
    or prefix: two deployments (two configs naming one target) would each replace the other's rows
    and delete them as gone from their source, every cycle, while every check says match."""
    if latest is None or not latest.manifest_uri:
        return ""
    theirs, ours = manifest_root(latest.manifest_uri), manifest_root(manifest_uri)
    if theirs is None or ours is None or theirs == ours:  # a URI of another shape proves nothing
        return ""
    return (f"the table is loaded from {theirs} (run {latest.run_id}), this snapshot comes from {ours}: two "
            "deployments whose configs name the same target table would overwrite each other's rows; give one of "
            "them another `target`, or, if this one now owns the table (a moved bucket or prefix), drop the "
            "BigQuery table and the next snapshot re-creates and reloads it")
