"""checkov on infra/: no failed check; every waiver sits next to the resource with its reason."""
from __future__ import annotations

from typing import Any

from tests.infra.conftest import INFRA


def test_checkov_finds_nothing_unwaived(checkov_report: dict[str, Any]) -> None:
    failed = checkov_report["results"]["failed_checks"]
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']}: "
                                 f"{c['check_name']}" for c in failed)
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0 and summary["resource_count"] > 0


def test_every_waiver_gives_a_reason(checkov_report: dict[str, Any]) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) > 20, f"{check['check_id']} on {check['resource']} is waived without a reason"


def test_waivers_are_written_in_code() -> None:
    """Waivers live as `# checkov:skip=ID: reason` in the .tf files, never as a global --skip-check."""
    waivers = [line.strip() for path in INFRA.rglob("*.tf") for line in path.read_text().splitlines()
               if "checkov:skip=" in line]
    assert waivers
    for waiver in waivers:
        check, _, reason = waiver.partition("checkov:skip=")[2].partition(":")
        assert check.startswith(("CKV_", "CKV2_")) and reason.strip(), waiver
