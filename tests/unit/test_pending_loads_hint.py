"""`run` that waited out its timeout with snapshots written but never loaded says where to look."""
import pytest

from matrix_sync.console import print_pending_loads_hint
from matrix_sync.cycle import TableReport


def report(load_status: str, run_id: str = "20261208T010203000000Z-abcdef") -> TableReport:
    return TableReport("orders", "p.d.orders", run_id, load_status=load_status)


def test_a_load_still_pending_gets_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    print_pending_loads_hint([report("applied"), report("pending")])
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith("loads still pending: check that the loader runs (`matrix-sync stack status`")
    assert "`matrix-sync dead-letters`" in said


@pytest.mark.parametrize("reports", [[report("applied")], [report("refused")], [report("pending", run_id="")]])
def test_no_hint_without_a_written_snapshot_left_unloaded(capsys: pytest.CaptureFixture[str],
                                                          reports: list[TableReport]) -> None:
    print_pending_loads_hint(reports)
    assert capsys.readouterr().err == ""
