"""The run report's HTML, from made-up ledger rows: numbers, failures in red, escaping, no network."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from matrix_sync.report import Run, TableRuns, render_html
from shared.config import Config

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = Config.model_validate({
    "source": {"url": "postgresql://reader:s3cret@db.corp/matrix"},
    "tables": [{"name": "dbo.Customers", "key": ["CustomerID"]}],
    "gcs": {"bucket": "b-1"}, "bigquery": {"project": "p-1", "dataset": "ds"}, "pubsub": {"project": "p-1"},
})


def _run(run_id: str, inserted: int, updated: int, deleted: int, *, status: str = "applied", verdict: str = "match",
         checks: dict[str, bool] | None = None, minutes: int = 0, **certificate: int) -> Run:
    extracted = T0 + timedelta(minutes=minutes)
    ledger = {"table_id": "p-1.ds.customers", "run_id": run_id, "mode": "full", "status": status, "sequence": minutes,
              "rows_inserted": inserted, "rows_updated": updated, "rows_deleted": deleted, "source_rows": 1000,
              "bytes": 123_456, "extracted_at": extracted, "recorded_at": extracted + timedelta(seconds=4),
              "message": "<script>alert(1)</script>" if status == "refused" else None}
    recon = {"verdict": verdict, "source_rows": 1000, "target_rows": 1000, "checked_at": extracted + timedelta(seconds=6),
             **certificate}
    validations = [{"check_name": name, "passed": passed, "checked_at": extracted + timedelta(seconds=7)}
                   for name, passed in (checks or {"row_count": True}).items()]
    ok = status in ("applied", "duplicate")
    return Run(ledger, recon if ok else None, validations if ok else [])


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _page() -> tuple[str, _Collect]:
    runs = [_run("r1", 1000, 0, 0), _run("r2", 5, 7, 3, minutes=10),
            _run("r3", 0, 0, 0, status="refused", minutes=20),
            _run("r4", 1, 2, 0, verdict="mismatch", checks={"row_count": True, "key_unique": False}, minutes=30,
                 changed_rows=2, missing_rows=1),
            _run("r5", 0, 1, 0, verdict="superseded", minutes=40)]
    page = render_html(CONFIG, [TableRuns("p-1.ds.customers", runs)], generated=T0)
    parser = _Collect()
    parser.feed(page)
    return page, parser


def test_bars_and_cells_carry_the_ledger_numbers() -> None:
    _, parsed = _page()
    bars = {(a["data-run"], a["data-series"]): a["data-value"] for t, a in parsed.tags if a.get("class") == "bar"}
    assert bars[("r2", "rows_inserted")] == "5"
    assert bars[("r2", "rows_updated")] == "7"
    assert bars[("r2", "rows_deleted")] == "3"
    assert bars[("r1", "load_seconds")] == "4.0"
    assert bars[("r1", "verdict_seconds")] == "7.0"
    assert bars[("r1", "bytes")] == "123456"
    cells = [(a["data-field"], a["data-value"]) for t, a in parsed.tags if t == "td" and a.get("data-value") is not None]
    assert ("rows_inserted", "1000") in cells and ("rows_deleted", "3") in cells
    assert sum(1 for t, a in parsed.tags if t == "svg" and a.get("class") == "chart") == 3


def test_failures_stand_out_and_nothing_is_loaded_from_the_network() -> None:
    page, parsed = _page()
    failed = [a["data-run"] for t, a in parsed.tags if t == "tr" and a.get("class") == "failed"]
    assert failed == ["r3", "r4"]  # refused load; mismatch and a failed check (superseded is no failure)
    assert 'data-failures="2"' in page
    assert "key_unique" in page and "(1 missing, 2 changed)" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "s3cret" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_no_password_of_the_source_url_reaches_the_page() -> None:
    for url in ("postgresql://reader:s3cret@db.corp/matrix", "mysql+pymysql://reader@db.corp/m?password=s3cret",
                "mssql+pyodbc://db.corp/m?odbc_connect=DRIVER%3Dx%3BPWD%3Ds3cret"):
        config = CONFIG.model_copy(update={"source": CONFIG.source.model_copy(update={"url": url})})
        page = render_html(config, [], generated=T0)
        assert "s3cret" not in page and "db.corp" in page, url


def test_a_bad_config_is_one_line_and_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from matrix_sync.report import report

    result = CliRunner().invoke(report, ["--config", str(tmp_path / "missing.yaml"), "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "config file not found" in result.output
    assert not (tmp_path / "r.html").exists()


def test_checks_run_later_do_not_stretch_the_chains_latency() -> None:
    run = _run("r1", 1, 0, 0)
    later = run.ledger["extracted_at"] + timedelta(hours=3)
    assert run.reconciliation is not None
    operator_check = {**run.reconciliation, "checked_at": later}
    rerun = Run(run.ledger, operator_check, [*run.validations, {"check_name": "row_count", "passed": True,
                                                                 "checked_at": later}],
                first_reconciled_at=run.reconciliation["checked_at"])
    assert rerun.verdict_seconds == 7.0


def test_a_certificate_without_counts_shows_none() -> None:
    run = _run("r1", 1, 0, 0, verdict="unverified")
    assert run.reconciliation is not None
    run.reconciliation |= {"source_rows": None, "target_rows": None}
    page = render_html(CONFIG, [TableRuns("p-1.ds.customers", [run])], generated=T0)
    assert "unverified" in page and "None" not in page


def test_a_later_passing_validation_supersedes_a_failed_one() -> None:
    run = _run("r1", 1, 0, 0, checks={"row_count": False, "not_null:name": True})
    later = run.ledger["extracted_at"] + timedelta(hours=1)
    fixed = Run(run.ledger, run.reconciliation, [*run.validations, {"check_name": "row_count", "passed": True,
                                                                     "checked_at": later},
                                                  {"check_name": "not_null:name", "passed": True, "checked_at": later}])
    assert (run.validation, run.failed_checks) == ("failed", ["row_count"])
    assert (fixed.validation, fixed.failed_checks, fixed.failed) == ("passed", [], False)


def test_a_configured_table_never_loaded_stands_out_and_keeps_under_failures_only() -> None:
    page = render_html(CONFIG, [TableRuns("p-1.ds.customers", [])], generated=T0)
    parsed = _Collect()
    parsed.feed(page)
    section = next(a for t, a in parsed.tags if t == "section")
    assert "has-failures" in (section["class"] or "") and "never loaded" in page
    assert 'class="badge bad">never loaded' in page
    # the failures-only filter hides rows of the runs tables, never their header rows
    assert "body.only-failures tbody tr:not(.failed){display:none}" in page
