"""Which superseded compacted key indexes the loader deletes after applying a snapshot S: those of
the applied delta runs older than P (the newest applied run before S), at most three per load."""
from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from google.api_core import exceptions as gexc

from shared.key_index import COMPACTED_PART_SUFFIX, CompactedIndex
from shared.loader import index_pruning
from shared.loader.index_pruning import AppliedRun, superseded
from shared.manifest import Part


def _run(sequence: int, mode: str = "delta") -> AppliedRun:
    run_id = f"run-{sequence}"
    return AppliedRun(run_id, sequence, mode, f"gs://b/snapshots/t/{run_id}/_manifest.json")


def _older(*runs: AppliedRun) -> list[AppliedRun]:
    return sorted(runs, key=lambda r: r.sequence, reverse=True)


def test_steady_state_the_runs_older_than_the_one_before_s_are_chosen() -> None:
    older = _older(*(_run(s) for s in range(1, 9)))  # S is run 9; P is run 8
    assert [r.sequence for r in superseded(older)] == [7, 6, 5]


def test_a_full_snapshot_in_between_is_kept_and_the_deltas_before_it_are_chosen() -> None:
    older = _older(_run(1, "full"), _run(2), _run(3), _run(4, "full"), _run(5), _run(6))  # S is 7
    assert [r.sequence for r in superseded(older)] == [5, 3, 2]


def test_the_newest_run_before_s_is_kept_even_when_it_is_full() -> None:
    older = _older(_run(1, "full"), _run(2), _run(3), _run(4, "full"))  # S is a delta on the full run 4
    assert [r.sequence for r in superseded(older)] == [3, 2]


@pytest.mark.parametrize("older", [
    [],                                        # S is the table's first snapshot
    [_run(1, "full")],                         # S is the first delta: P is its base
    _older(_run(1, "full"), _run(2)),          # only P and the full snapshot before it
    _older(*(_run(s, "full") for s in range(1, 6))),  # full-only (keyless) tables
])
def test_fewer_older_runs_choose_nothing(older: list[AppliedRun]) -> None:
    assert superseded(older) == []


def test_fewer_than_three_older_deltas_are_all_chosen_and_never_more_than_three() -> None:
    assert [r.sequence for r in superseded(_older(_run(1, "full"), _run(2), _run(3), _run(4)))] == [3, 2]
    assert len(superseded(_older(*(_run(s) for s in range(1, 30))))) == 3


def _listing(run: AppliedRun, names: list[str]) -> CompactedIndex:
    folder = run.manifest_uri.rsplit("/", 1)[0]
    return CompactedIndex(run_id=run.run_id, rows=10, raw_hash=None,
                          parts=[Part(uri=f"{folder}/_index/{n}", rows=5, bytes=100, md5="x") for n in names])


@pytest.fixture
def deleted() -> Iterator[list[str]]:
    calls: list[str] = []

    def delete(uri: str, suffix: str) -> bool:
        calls.append(uri)
        return uri.endswith(suffix)

    with mock.patch.object(index_pruning.gcs, "delete_with_suffix", side_effect=delete):
        yield calls


def test_only_parts_named_with_the_suffix_are_deleted_and_older_names_are_told_once(
        deleted: list[str], caplog: pytest.LogCaptureFixture) -> None:
    run = _run(3)
    names = [f"compacted-abc123-00000{COMPACTED_PART_SUFFIX}", "compacted-def456-00000.parquet",
             "compacted-def456-00001.parquet"]
    with mock.patch.object(index_pruning.key_index, "listing_of", return_value=_listing(run, names)), \
            caplog.at_level("INFO"):
        index_pruning._prune_run(run)
    assert [u for u in deleted if u.endswith(COMPACTED_PART_SUFFIX)] == [deleted[0]]
    told = [r for r in caplog.records if "lifecycle rule" in r.getMessage()]
    assert len(told) == 1 and told[0].levelname == "INFO" and "2 part(s)" in told[0].getMessage()


def test_a_failing_delete_is_one_warning_naming_the_runs_and_never_raises(
        caplog: pytest.LogCaptureFixture) -> None:
    manifest = mock.Mock(run_id="run-9", sequence=9, delta=None, index_parts=[mock.Mock()])
    manifest.table_schema.keyless = False
    runs = [_run(7), _run(6)]
    listing = _listing(runs[0], [f"compacted-abc123-00000{COMPACTED_PART_SUFFIX}"])
    with mock.patch.object(index_pruning, "_applied_before", return_value=[_run(8), *runs]), \
            mock.patch.object(index_pruning.key_index, "listing_of", return_value=listing) as listed, \
            mock.patch.object(index_pruning.gcs, "delete_with_suffix", side_effect=gexc.Forbidden("no delete")):
        index_pruning.prune_superseded(manifest, "gs://b/snapshots/t/run-9/_manifest.json")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "run-7" in warnings[0] and "run-9" in warnings[0] and "Forbidden" in warnings[0]
    assert listed.call_count == 1  # stopped at the first failure


def test_an_unreachable_ledger_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    manifest = mock.Mock(run_id="run-9", sequence=9, delta=None, index_parts=[mock.Mock()])
    manifest.table_schema.keyless = False
    with mock.patch.object(index_pruning.ledger, "applied_before", side_effect=gexc.ServiceUnavailable("down")):
        index_pruning.prune_superseded(manifest, "gs://b/snapshots/t/run-9/_manifest.json")
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "run-9" in caplog.records[0].getMessage()


def test_a_keyless_table_asks_nothing() -> None:
    manifest = mock.Mock()
    manifest.table_schema.keyless = True
    with mock.patch.object(index_pruning.ledger, "applied_before") as asked:
        index_pruning.prune_superseded(manifest, "gs://b/snapshots/t/run-9/_manifest.json")
    assert not asked.called
