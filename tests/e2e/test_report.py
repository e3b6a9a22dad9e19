"""`matrix-sync report` after two real cycles: the page renders in headless Chromium, its charts are
laid out, a screenshot is not blank, and every number it shows is the ledger's; a table whose
extraction fails is shown failed, as `status` shows it."""
from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from matrix_sync import sample
from matrix_sync.cycle import extract_all, wait_for_chain
from matrix_sync.operator_views import record_operator_action
from matrix_sync.report import collect, report
from matrix_sync.stack import LocalStack
from shared import bigquery as bq
from tests.support import sample_config, write_config
from tests.support_reconcile import table_id

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")
    return found


def _browse(page: Path, profile: Path, *extra: str, fragment: str = "") -> subprocess.CompletedProcess[str]:
    command = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri() + fragment]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


class _Dom(HTMLParser):
    """Start tags with their attributes and the section (table id) they are in; per section and run
    row, each cell's `data-v` and text under its column's `data-field`; per chart, its section."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str], str | None]] = []
        self.fields: list[str] = []
        self.section: str | None = None
        self.run: str | None = None
        self.column = 0
        self.cells: dict[tuple[str, str, str], tuple[str | None, str]] = {}
        self.numbers: dict[tuple[str, str], str] = {}  # (table id, row number) -> run id
        self.field: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.section = values.get("data-table", self.section) if tag == "section" else self.section
        self.tags.append((tag, values, self.section))
        if tag == "th" and len(self.fields) < 13:
            self.fields.append(values.get("data-field", "#" if not self.fields else ""))
        elif tag == "tr":
            self.run, self.column = values.get("data-run"), 0
        elif tag == "td" and self.section and self.run:
            self.field = self.fields[self.column] or None
            self.column += 1
            if self.field:
                self.cells[(self.section, self.run, self.field)] = (values.get("data-v"), "")

    def handle_data(self, data: str) -> None:
        if self.field and self.section and self.run:
            key = (self.section, self.run, self.field)
            value, text = self.cells[key]
            self.cells[key] = (value, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.field == "#" and self.section and self.run:
            self.numbers[(self.section, self.cells[(self.section, self.run, "#")][1])] = self.run
        if tag == "td":
            self.field = None

    def chart_values(self) -> dict[tuple[str, str], str]:
        """(run id, series) -> the value its chart holds, from each run group's `data-v` and `data-n`."""
        values: dict[tuple[str, str], str] = {}
        series: list[str] = []
        for tag, attrs, section in self.tags:
            if tag == "svg":
                series = attrs.get("data-series", "").split()
            elif attrs.get("class") == "hit" and section:
                run = self.numbers[(section, attrs["data-n"])]
                values.update({(run, key): v for key, v in zip(series, attrs["data-v"].split(), strict=True)})
        return values

    def charts_with_values(self) -> set[str]:
        """The ids of the charts some run of which has a value above 0 (so a bar to draw)."""
        found: set[str] = set()
        chart = ""
        for tag, attrs, _ in self.tags:
            chart = attrs.get("id", "") if tag == "svg" else chart
            if attrs.get("class") == "hit" and any(v not in ("0", "-") for v in attrs["data-v"].split()):
                found.add(chart)
        return found


def _png_pixels_vary(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data): a blank page has ~2."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    return size[0], size[1], len(set(zlib.decompress(idat)))


def test_report_of_two_cycles_renders_and_shows_the_ledger(stack: LocalStack, tmp_path: Path, unique_name: str) -> None:
    _chromium()
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=23)
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, url=f"sqlite:///{database}", tables=sample.TABLE_KEYS, suffix=unique_name,
                          chunk_rows=50)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    for cycle in range(2):
        reports = wait_for_chain(config, extract_all(config), timeout_s=180)
        assert all(r.ok for r in reports), reports
        if cycle == 0:
            sample.mutate(database, 0.2, seed=77)

    page = tmp_path / "report.html"
    result = CliRunner().invoke(report, ["--config", str(config_path), "--output", str(page)])
    assert result.exit_code == 0, result.output
    assert f"{len(config.tables)} table(s), {2 * len(config.tables)} run(s), 0 failed" in result.output

    # with #check-every-chart the page's script lays out every chart, not only a sample on top
    dom_text = _browse(page, tmp_path / "profile-dom", "--virtual-time-budget=3000", "--dump-dom",
                       fragment="#check-every-chart").stdout
    dom = _Dom()
    dom.feed(dom_text)
    body = next(attrs for tag, attrs, _ in dom.tags if tag == "body")
    charts = [attrs for tag, attrs, _ in dom.tags if tag == "svg" and attrs.get("class") == "chart"]
    assert len(charts) == 3 * len(config.tables)
    values = dom.chart_values()
    assert len(values) == 2 * len(config.tables) * 6  # every run in every chart: 3 counts, 2 durations, bytes
    with_bars = len(dom.charts_with_values())
    # set by the page's script after load, from the laid-out sizes of the SVG charts and of their bars
    assert body.get("data-checked-charts") == body.get("data-rendered-charts") == str(len(charts)), body
    assert body.get("data-charts-with-bars") == str(with_bars) and with_bars >= len(config.tables), body
    assert body.get("data-failures") == "0"

    project, dataset = config.bigquery.project, config.bigquery.dataset
    ledger = bq.query(project, f"SELECT table_id, run_id, rows_inserted, rows_updated, rows_deleted, source_rows "
                               f"FROM `{project}.{dataset}._sync_ledger`")
    assert len(ledger) == 2 * len(config.tables)
    changed_somewhere = False
    for row in ledger:
        for name in ("rows_inserted", "rows_updated", "rows_deleted", "source_rows"):
            expected = int(row[name] or 0)
            assert dom.cells[(row["table_id"], row["run_id"], name)] == (None, f"{expected:,}"), (row, name)
            if name != "source_rows":
                assert values[(row["run_id"], name)] == str(expected)
                changed_somewhere |= name != "rows_inserted" and expected > 0
    assert changed_somewhere, "the second cycle should have updated or deleted rows"

    shot = tmp_path / "report.png"
    _browse(page, tmp_path / "profile-shot", "--window-size=1280,1600", f"--screenshot={shot}")
    width, height, distinct = _png_pixels_vary(shot)
    assert (width, height) == (1280, 1600)
    assert distinct > 40, f"the screenshot looks blank ({distinct} distinct byte values)"


def test_report_reads_only_the_runs_it_shows(stack: LocalStack, tmp_path: Path, unique_name: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a year of hourly runs the ledger and results tables hold millions of rows: the page asks
    BigQuery for the last `--limit` runs of each table and their results, not for everything."""
    config = sample_config(stack, tmp_path / "config.yaml", seed=29, suffix=unique_name,
                           tables={"customers": ["customer_id"], "accounts": ["account_no"]})
    database = tmp_path / "matrix.db"
    runs: list[list[str]] = []
    for _ in range(3):
        reports = wait_for_chain(config, extract_all(config), timeout_s=180)
        assert all(r.ok for r in reports), reports
        runs.append(sorted(r.run_id for r in reports))
        sample.mutate(database, 0.2, seed=len(runs))

    fetched: list[set[str]] = []
    real_query = bq.query

    def recording_query(*args: object, **kwargs: object) -> list[object]:
        rows = real_query(*args, **kwargs)  # type: ignore[arg-type]
        fetched.append({str(row["run_id"]) for row in rows})
        return rows

    monkeypatch.setattr("matrix_sync.report.bq.query", recording_query)
    tables = collect(config, limit=1)
    assert sorted(str(run.ledger["run_id"]) for table in tables for run in table.runs) == runs[-1]
    assert all(run.verdict == "match" and run.validation == "passed" for table in tables for run in table.runs)
    # ledger, reconciliations, validations: each read only for the last run, nothing of the two before
    assert fetched == [set(runs[-1])] * 3, fetched

    # an operator's delete has no snapshot sequence: it is shown, and kept under --limit, in time order
    customers_id = table_id(config, "customers")
    deleted = record_operator_action(config, "customers", customers_id, "operator-delete", 1, "delete: test")
    customers = next(t for t in collect(config, limit=2) if t.table_id == customers_id)
    shown = [(str(run.ledger["run_id"]), run.ledger["status"]) for run in customers.runs]
    assert len(shown) == 2 and shown[0][0] in runs[-1] and shown[0][1] == "applied"
    assert shown[1] == (deleted, "operator-delete")


def test_a_report_before_any_load_lists_the_configured_tables(stack: LocalStack, tmp_path: Path,
                                                              unique_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "config.yaml"
    sample_config(stack, config_path, seed=31, suffix=unique_name, tables={"customers": ["customer_id"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    page = tmp_path / "report.html"
    result = CliRunner().invoke(report, ["--config", str(config_path), "--output", str(page)])
    assert result.exit_code == 0, result.output
    assert "1 table(s), 0 run(s), 0 failed" in result.output
    assert 'class="badge bad">never loaded' in page.read_text(encoding="utf-8")


def test_a_table_whose_extraction_fails_is_shown_failed(stack: LocalStack, tmp_path: Path, unique_name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed extraction writes no manifest, so nothing of it reaches the ledger: the page reads the
    outcome `status` reads and counts it, after the last applied run shown green."""
    config_path = tmp_path / "config.yaml"
    config = sample_config(stack, config_path, seed=47, suffix=unique_name,
                           tables={"customers": ["customer_id"], "payments": ["account_id", "payment_no"]})
    monkeypatch.setenv("MATRIX_STACK_DIR", str(stack.root))
    reports = wait_for_chain(config, extract_all(config), timeout_s=180)
    assert all(r.ok for r in reports), reports
    with sqlite3.connect(tmp_path / "matrix.db") as db:
        db.execute("ALTER TABLE payments RENAME TO payments_archive")
    assert extract_all(config, tables=["payments"]) == []

    page = tmp_path / "report.html"
    result = CliRunner().invoke(report, ["--config", str(config_path), "--output", str(page)])
    assert result.exit_code == 0, result.output
    assert "2 table(s), 2 run(s), 1 failed" in result.output
    text = page.read_text(encoding="utf-8")
    dom = _Dom()
    dom.feed(text)
    sections = {attrs["data-table"]: attrs["class"] for tag, attrs, _ in dom.tags if tag == "section"}
    assert sections == {table_id(config, "customers"): "table", table_id(config, "payments"): "table has-failures"}
    assert 'data-failures="1"' in text and 'class="badge bad">extraction failed' in text
    failed = [part for part in text.split('<p class="extraction')[1:] if part.startswith(' bad">')]
    assert len(failed) == 1 and ": failed (" in failed[0] and "not found" in failed[0].split("</p>")[0]
    assert text.count('<p class="extraction">last extraction ') == 1  # customers: extracted, healthy
