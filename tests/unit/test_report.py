"""The run report's HTML, from made-up ledger rows: numbers, failures in red, escaping, no network,
charts that stay readable (and a page that stays small) at hundreds of runs, failed extractions."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from matrix_sync import report as report_module
from matrix_sync.report import Run, TableRuns, collect, render_html
from shared.config import Config
from shared.extractor.outcomes import EXTRACTED, FAILED, ExtractionOutcome

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = Config.model_validate({
    "source": {"url": "postgresql://reader:s3cret@db.corp/matrix"},
    "tables": [{"name": "dbo.Customers", "key": ["CustomerID"]}],
    "gcs": {"bucket": "b-1"}, "bigquery": {"project": "p-1", "dataset": "ds"}, "pubsub": {"project": "p-1"},
})


def _run(run_id: str, inserted: int, updated: int, deleted: int, *, status: str = "applied", verdict: str = "match",
         checks: dict[str, bool] | None = None, minutes: int = 0, mode: str = "full", **certificate: int) -> Run:
    extracted = T0 + timedelta(minutes=minutes)
    ledger = {"table_id": "p-1.ds.customers", "run_id": run_id, "mode": mode, "status": status, "sequence": minutes,
              "rows_inserted": inserted, "rows_updated": updated, "rows_deleted": deleted, "source_rows": 1000,
              "bytes": 123_456, "extracted_at": extracted, "recorded_at": extracted + timedelta(seconds=4),
              "message": "<script>alert(1)</script>" if status == "refused" else None}
    recon = {"verdict": verdict, "source_rows": 1000, "target_rows": 1000, "checked_at": extracted + timedelta(seconds=6),
             **certificate}
    validations = [{"check_name": name, "passed": passed, "checked_at": extracted + timedelta(seconds=7)}
                   for name, passed in (checks or {"row_count": True}).items()]
    ok = status in ("applied", "duplicate")
    return Run(ledger, recon if ok else None, validations if ok else [])


def _history(count: int) -> list[Run]:
    """An initial full load of 100k rows, then deltas; every 7th refused."""
    return [_run("r1", 100_000, 0, 0)] + [
        _run(f"r{i}", 40 + i % 50, 100 + i % 70, i % 9, minutes=10 * i, mode="delta",
             status="refused" if i % 7 == 0 else "applied") for i in range(2, count + 1)]


class _Page(HTMLParser):
    """Start tags (with the id of the chart they are in), the text of SVG texts, and per run row its
    cells' attributes and text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], str | None]] = []
        self.texts: list[tuple[dict[str, str], str, str | None]] = []
        self.rows: dict[str, list[tuple[dict[str, str], str]]] = {}
        self.fields: list[str | None] = []
        self.chart: str | None = None
        self.row: str | None = None
        self.in_text = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.chart = values.get("id") if tag == "svg" else self.chart
        self.tags.append((tag, values, self.chart))
        if tag == "th" and len(self.fields) < 13:
            self.fields.append(values.get("data-field"))
        elif tag == "tr":
            self.row = values.get("data-run")
            if self.row:
                self.rows[self.row] = []
        elif tag == "td" and self.row:
            self.rows[self.row].append((values, ""))
        elif tag == "text":
            self.texts.append((values, "", self.chart))
            self.in_text = True

    def handle_endtag(self, tag: str) -> None:
        self.chart = None if tag == "svg" else self.chart
        self.row = None if tag == "tr" else self.row
        self.in_text = False if tag == "text" else self.in_text

    def handle_data(self, data: str) -> None:
        if self.in_text:
            attrs, text, chart = self.texts[-1]
            self.texts[-1] = (attrs, text + data, chart)
        elif self.row and self.rows[self.row]:
            attrs, text = self.rows[self.row][-1]
            self.rows[self.row][-1] = (attrs, text + data)

    def in_chart(self, chart: str, tag: str = "rect", css: str | None = None) -> list[dict[str, str]]:
        return [a for t, a, c in self.tags if c == chart and t == tag and (css is None or a.get("class") == css)]

    def chart_values(self) -> dict[tuple[str, str], str]:
        """(run id, series) -> the value a chart holds for it, from each run group's `data-v`."""
        runs = {cells[0][1]: run for run, cells in self.rows.items()}
        values: dict[tuple[str, str], str] = {}
        for tag, attrs, chart in self.tags:
            if tag == "svg" and attrs.get("class") == "chart":
                series = attrs["data-series"].split()
                for hit in self.in_chart(chart, css="hit"):
                    for key, value in zip(series, hit["data-v"].split(), strict=True):
                        values[(runs[hit["data-n"]], key)] = value
        return values

    def cells(self) -> dict[tuple[str, str], tuple[str | None, str]]:
        """(run id, field) -> (the cell's `data-v` if it has one, its text)."""
        return {(run, name): (attrs.get("data-v"), text) for run, cells in self.rows.items()
                for name, (attrs, text) in zip(self.fields, cells, strict=True) if name}

    def bars(self, chart: str) -> list[dict[str, float]]:
        """The chart's bars (subpaths `M x base v-height h width v height z`, one path a series), each
        with `series`: the position of its path, the series' order."""
        paths = [a["d"] for t, a, c in self.tags if c == chart and t == "path"]
        return [{"series": series, "x": float(x), "width": float(w), "height": float(h)}
                for series, d in enumerate(paths) for x, h, w in re.findall(r"M([\d.]+) [\d.]+v-([\d.]+)h([\d.]+)", d)]

    def drawn_values(self, chart: str) -> list[tuple[float, float]]:
        """(value, height) of each bar: the value its run group's `data-v` holds for the bar's series."""
        hits = self.in_chart(chart, css="hit")
        pairs = []
        for bar in self.bars(chart):
            [hit] = [h for h in hits if float(h["x"]) <= bar["x"] < float(h["x"]) + float(h["width"])]
            pairs.append((float(hit["data-v"].split()[int(bar["series"])]), bar["height"]))
        return pairs


def _page() -> tuple[str, _Page]:
    runs = [_run("r1", 1000, 0, 0), _run("r2", 5, 7, 3, minutes=10),
            _run("r3", 0, 0, 0, status="refused", minutes=20),
            _run("r4", 1, 2, 0, verdict="mismatch", checks={"row_count": True, "key_unique": False}, minutes=30,
                 changed_rows=2, missing_rows=1),
            _run("r5", 0, 1, 0, verdict="superseded", minutes=40)]
    page = render_html(CONFIG, [TableRuns("p-1.ds.customers", runs)], generated=T0)
    return page, _Page(page)


def _page_of(tables: list[TableRuns], generated: datetime = T0) -> tuple[str, _Page]:
    page = render_html(CONFIG, tables, generated=generated)
    return page, _Page(page)


def test_charts_and_cells_carry_the_ledger_numbers() -> None:
    _, parsed = _page()
    values = parsed.chart_values()
    assert [values[("r2", key)] for key in ("rows_inserted", "rows_updated", "rows_deleted")] == ["5", "7", "3"]
    assert (values[("r1", "load_seconds")], values[("r1", "verdict_seconds")]) == ("4", "7")
    assert values[("r1", "bytes")] == "123456"
    cells = parsed.cells()
    assert cells[("r1", "rows_inserted")] == (None, "1,000") and cells[("r2", "rows_deleted")] == (None, "3")
    assert cells[("r1", "bytes")] == ("123456", "123.5 kB") and cells[("r1", "load_seconds")] == ("4", "4.0 s")
    assert sum(1 for t, a, _ in parsed.tags if t == "svg" and a.get("class") == "chart") == 3
    for chart in ("changes-0", "durations-0", "bytes-0"):  # every bar drawn to its run's value, on one scale
        pairs = parsed.drawn_values(chart)
        top_value, top_height = max(pairs)
        assert len(pairs) >= 2 and all(abs(h - v * top_height / top_value) <= 0.1 for v, h in pairs), chart


def test_failures_stand_out_and_nothing_is_loaded_from_the_network() -> None:
    page, parsed = _page()
    failed = [a["data-run"] for t, a, _ in parsed.tags if t == "tr" and "failed" in a.get("class", "").split()
              and a.get("data-run")]
    assert failed == ["r3", "r4"]  # refused load; mismatch and a failed check (superseded is no failure)
    assert 'data-failures="2"' in page
    assert "key_unique" in page and "(1 missing, 2 changed)" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "s3cret" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_the_numbers_of_failed_runs_are_red() -> None:
    page, parsed = _page()
    labels = {text: attrs for attrs, text, chart in parsed.texts if chart == "changes-0"
              and "run-label" in attrs.get("class", "")}
    assert [labels[n]["class"] for n in ("1", "2", "3", "4", "5")] == [
        "run-label", "run-label", "run-label failed", "run-label failed", "run-label"]
    # a fill attribute would lose to the stylesheet's grey: the colour comes from a more specific rule
    assert not any("fill" in attrs for attrs in labels.values())
    assert ".chart .run-label.failed{fill:#c62828" in page and ".chart .run-label{" in page


def test_charts_of_many_runs_keep_bars_labels_and_failures_apart() -> None:
    page, parsed = _page_of([TableRuns("p-1.ds.customers", _history(200))])
    for chart, series in (("changes-0", 3), ("durations-0", 2), ("bytes-0", 1)):
        svg = next(a for t, a, c in parsed.tags if t == "svg" and c == chart)
        assert float(svg["width"]) > 410, chart  # grows (and scrolls inside its card) instead of squeezing bars
        bars = sorted(parsed.bars(chart), key=lambda b: b["x"])
        assert len(bars) >= 150 * series and all(b["width"] >= 3 for b in bars), chart
        assert all(a["x"] + a["width"] <= b["x"] + 1e-6 for a, b in zip(bars, bars[1:], strict=False)), chart
        labels = sorted((float(a["x"]), text, a["class"]) for a, text, c in parsed.texts
                        if c == chart and "run-label" in a.get("class", ""))
        assert all(b[0] - a[0] >= 7 * max(len(a[1]), len(b[1])) for a, b in zip(labels, labels[1:], strict=False))
        assert labels[-1][1] == "200" and len(labels) >= 10, chart
        assert all(("failed" in css) == (int(text) % 7 == 0) for _, text, css in labels), chart
        marks = parsed.in_chart(chart, css="fail-mark")
        assert len(marks) == 200 // 7 and all(float(m["width"]) >= 5 for m in marks), chart
        assert len(parsed.in_chart(chart, css="hit")) == 200  # one group (and tooltip) per run
    assert ".chart-box .plot{overflow-x:auto" in page


def test_a_first_full_load_does_not_flatten_the_deltas_after_it() -> None:
    runs = [_run("r1", 100_000, 0, 0)] + [_run(f"r{i}", 50, 80, 10, mode="delta", minutes=i) for i in range(2, 10)]
    page, parsed = _page_of([TableRuns("p-1.ds.customers", runs)])
    grid = [float(a["y1"]) for a in parsed.in_chart("changes-0", "line", "grid")]
    plot_height = max(grid) - min(grid)
    tallest_delta = max(b["height"] for b in parsed.bars("changes-0")[1:])
    assert tallest_delta > 0.3 * plot_height
    assert "full loads left out of the scale" in page
    assert [t for a, t, c in parsed.texts if c == "changes-0" and a.get("class") == "clip"] == ["100,000"]


def test_the_reason_of_a_failure_is_shown_whole_under_its_run() -> None:
    reason = "refused: the schema of the snapshot lost column " + ", ".join(f"column_{i}" for i in range(40))
    run = _run("r1", 1, 0, 0, status="refused")
    run.ledger["message"] = reason
    page, parsed = _page_of([TableRuns("p-1.ds.customers", [run])])
    rows = [a for t, a, _ in parsed.tags if t == "tr"]
    assert rows[-2] == {"class": "failed has-note", "data-run": "r1"}
    assert rows[-1] == {"class": "note failed"}
    assert f'<td colspan="13">↳ {reason}</td>' in page
    assert "table.runs tr.note td{white-space:normal" in page


def test_a_page_of_many_runs_stays_small() -> None:
    tables = [TableRuns(f"p-1.ds.t{i}", _history(200)) for i in range(3)]
    page = render_html(CONFIG, tables, generated=T0)
    assert len(page.encode()) / 600 < 1300  # bytes a run: 2.5 kB before
    assert page.count("<title>") == 1 + 3 * 3 * 200  # the page's, and one per run group of each chart
    assert "data-run=" not in page.split("<table", 1)[0]  # the charts name runs by their number only


def test_a_table_whose_last_extraction_failed_counts_as_a_failure() -> None:
    failed = ExtractionOutcome(FAILED, T0 + timedelta(hours=1), reason="no such table: customers")
    page, parsed = _page_of([TableRuns("p-1.ds.customers", [_run("r1", 10, 0, 0)], failed)],
                            generated=T0 + timedelta(hours=2))
    section = next(a for t, a, _ in parsed.tags if t == "section")
    assert "has-failures" in section["class"] and 'data-failures="1"' in page
    assert 'class="badge bad">extraction failed' in page
    assert ('<p class="extraction bad">last extraction 2026-11-25 13:00:00 UTC: failed (1.0 h ago): '
            "no such table: customers</p>") in page


def test_an_extraction_that_failed_before_the_newest_applied_run_is_no_failure() -> None:
    for outcome in (ExtractionOutcome(FAILED, T0 - timedelta(hours=1), reason="timeout"),
                    ExtractionOutcome(EXTRACTED, T0, run_id="r1")):
        page, parsed = _page_of([TableRuns("p-1.ds.customers", [_run("r1", 10, 0, 0)], outcome)])
        section = next(a for t, a, _ in parsed.tags if t == "section")
        assert "has-failures" not in section["class"] and 'data-failures="0"' in page
        assert f'<p class="extraction">last extraction {outcome.at:%Y-%m-%d %H:%M:%S} UTC: {outcome.outcome}' in page


def test_a_never_loaded_table_says_why_its_extraction_failed() -> None:
    failed = ExtractionOutcome(FAILED, T0, reason="column type has no BigQuery type")
    page, _ = _page_of([TableRuns("p-1.ds.customers", [], failed)])
    assert "never loaded" in page and "column type has no BigQuery type" in page and 'data-failures="1"' in page


def test_collect_reads_the_last_extraction_of_each_configured_table(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = ExtractionOutcome(FAILED, T0, reason="boom")
    read: list[tuple[str, str, str]] = []
    monkeypatch.setattr(report_module.bq, "get_table", lambda _table_id: None)  # nothing loaded yet
    monkeypatch.setattr(report_module.outcomes, "read", lambda *args: read.append(args) or failed)
    [table] = collect(CONFIG)
    target = CONFIG.tables[0].target_table
    assert read == [("b-1", CONFIG.gcs.prefix, target)]
    assert (table.table_id, table.extraction, table.failures) == (f"p-1.ds.{target}", failed, 1)


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
    page, parsed = _page_of([TableRuns("p-1.ds.customers", [])])
    section = next(a for t, a, _ in parsed.tags if t == "section")
    assert "has-failures" in section["class"] and "never loaded" in page
    assert 'class="badge bad">never loaded' in page
    # the failures-only filter hides rows of the runs tables, never their header rows
    assert "body.only-failures tbody tr:not(.failed){display:none}" in page
