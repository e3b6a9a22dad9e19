"""`matrix-sync report`: one self-contained HTML page of what the chain did, table by table.

Reads the ledger (`_sync_ledger`) and the results tables (`_sync_reconciliations`,
`_sync_validations`) of the config's dataset, and each configured table's last extraction outcome
(what `status` reads), and writes a single HTML file: inline CSS, a few lines of inline JavaScript
(a "failures only" filter and a render check), and charts as inline SVG (report_charts), so it
opens anywhere without a network. Per table: its last extraction, rows inserted, updated and
deleted per run, durations and bytes per run, the reconciliation and validation verdicts, and a
table of runs. Anything that failed is red.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from google.cloud import bigquery

from matrix_sync.operator_views import extraction_text, failed_since
from matrix_sync.report_charts import CHART_CSS, RunMark, Series, bar_chart, fmt, raw
from matrix_sync.report_charts import escape as _e
from shared import bigquery as bq
from shared import ledger as ledger_rows
from shared.config import Config, ConfigError, load_config
from shared.extractor import outcomes
from shared.identifiers import quote_bigquery
from shared.topology import LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE

FAILED_STATUSES = {"refused"}
OK_STATUSES = {"applied", "duplicate"}
SERIES = (("rows_inserted", "inserted", "#2e7d32"), ("rows_updated", "updated", "#1565c0"),
          ("rows_deleted", "deleted", "#ef6c00"))
# "superseded": a newer snapshot was applied before this one could be checked (not a failure).
NEUTRAL_VERDICTS = {"match", "pending", "–", "superseded"}
DIFFERENCE_KINDS = (("missing_rows", "missing"), ("extra_rows", "extra"), ("changed_rows", "changed"),
                    ("duplicate_rows", "duplicate"))


# --- data ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One ledger row with the verdicts recorded for its run."""

    ledger: dict[str, Any]
    reconciliation: dict[str, Any] | None = None  # the latest of the run's reconciliations
    validations: list[dict[str, Any]] = field(default_factory=list)
    first_reconciled_at: datetime | None = None  # the chain's, not an operator's later check

    def __getitem__(self, name: str) -> Any:
        return self.ledger.get(name)

    def count(self, name: str) -> int:
        return int(self.ledger.get(name) or 0)

    @property
    def status(self) -> str:
        return str(self.ledger.get("status") or "unknown")

    @property
    def verdict(self) -> str:
        if self.status not in OK_STATUSES:
            return "–"
        return str(self.reconciliation["verdict"]) if self.reconciliation else "pending"

    @property
    def latest_checks(self) -> list[dict[str, Any]]:
        """The run's newest validation: a later `validate --record` that passes supersedes a failure."""
        moments = [v.get("checked_at") for v in self.validations if isinstance(v.get("checked_at"), datetime)]
        newest = max(moments, default=None)
        return [v for v in self.validations if newest is None or v.get("checked_at") == newest]

    @property
    def failed_checks(self) -> list[str]:
        return sorted({str(v["check_name"]) for v in self.latest_checks if not v.get("passed")})

    @property
    def validation(self) -> str:
        if self.status not in OK_STATUSES:
            return "–"
        if not self.validations:
            return "pending"
        return "failed" if self.failed_checks else "passed"

    @property
    def failed(self) -> bool:
        return (self.status in FAILED_STATUSES or self.verdict not in NEUTRAL_VERDICTS
                or self.validation == "failed")

    def seconds(self, until: datetime | None) -> float | None:
        start = self.ledger.get("extracted_at")
        if not isinstance(start, datetime) or not isinstance(until, datetime):
            return None
        return max(0.0, (until - start).total_seconds())

    @property
    def load_seconds(self) -> float | None:
        """From the start of the extraction to the ledger row (the load's commit)."""
        return self.seconds(self.ledger.get("recorded_at"))

    @property
    def verdict_seconds(self) -> float | None:
        """From the start of the extraction until the run's first reconciliation and first validation
        were both in: the chain's latency, which checks run later (an operator's) do not stretch."""
        reconciled = self.first_reconciled_at or (self.reconciliation or {}).get("checked_at")
        validated = [v.get("checked_at") for v in self.validations]
        firsts = [t for t in (reconciled, min((t for t in validated if isinstance(t, datetime)), default=None))
                  if isinstance(t, datetime)]
        return self.seconds(max(firsts)) if firsts else None


@dataclass
class TableRuns:
    table_id: str
    runs: list[Run]
    extraction: outcomes.ExtractionOutcome | None = None  # a configured table's last one, as `status` reads it

    @property
    def name(self) -> str:
        return self.table_id.rsplit(".", 1)[-1]

    @property
    def newest_applied(self) -> dict[str, Any] | None:
        applied = [r.ledger for r in self.runs if r.status == ledger_rows.APPLIED]
        return applied[-1] if applied else None

    @property
    def extraction_failed(self) -> bool:
        """Its last extraction failed after its newest applied run was extracted (`status` flags it too)."""
        return failed_since(self.extraction, self.newest_applied)

    @property
    def failures(self) -> int:
        """Failed runs, and a failed last extraction (which leaves no run in the ledger)."""
        return sum(r.failed for r in self.runs) + self.extraction_failed


def _latest_runs(ledger: str) -> str:
    """The last `@limit` rows of each table in `ledger` (quoted): what the page shows, however long
    the history. In the order they were recorded: an operator's delete has no snapshot sequence."""
    return (f"SELECT * FROM {ledger} QUALIFY ROW_NUMBER() OVER "
            "(PARTITION BY table_id ORDER BY recorded_at DESC) <= @limit")


def _results_of_latest_runs(results: str, ledger: str) -> str:
    """The rows of a results table (quoted) that belong to the runs `_latest_runs` picks."""
    return (f"SELECT R.* FROM {results} AS R WHERE EXISTS (SELECT 1 FROM ({_latest_runs(ledger)}) AS L "
            "WHERE L.table_id = R.table_id AND L.run_id = R.run_id) ORDER BY R.checked_at")


def collect(config: Config, limit: int = 200) -> list[TableRuns]:
    """The config's tables (those never loaded with no runs), each with its last extraction outcome,
    then every other table in the dataset's ledger, its last `limit` runs each;
    only those runs and their results are read, so the page costs the same after a year of runs."""
    project, dataset = config.bigquery.project, config.bigquery.dataset
    params = [bigquery.ScalarQueryParameter("limit", "INT64", limit)]

    def rows(sql: str, table: str = LEDGER_TABLE) -> list[dict[str, Any]]:
        if bq.get_table(f"{project}.{dataset}.{table}") is None:
            return []
        return [dict(row.items()) for row in bq.query(project, sql, params)]

    ledger_q = quote_bigquery(project, dataset, LEDGER_TABLE)
    ledger = rows(f"{_latest_runs(ledger_q)} ORDER BY table_id, recorded_at")
    reconciliations: dict[tuple[str, str], dict[str, Any]] = {}
    first_reconciled: dict[tuple[str, str], datetime] = {}
    for row in rows(_results_of_latest_runs(quote_bigquery(project, dataset, RECONCILIATION_TABLE), ledger_q),
                    RECONCILIATION_TABLE):
        reconciliations[(row["table_id"], row["run_id"])] = row  # the latest verdict wins
        first_reconciled.setdefault((row["table_id"], row["run_id"]), row["checked_at"])
    validations: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows(_results_of_latest_runs(quote_bigquery(project, dataset, VALIDATION_TABLE), ledger_q),
                    VALIDATION_TABLE):
        validations[(row["table_id"], row["run_id"])].append(row)
    by_table: dict[str, list[Run]] = defaultdict(list)
    for row in ledger:
        key = (row["table_id"], row["run_id"])
        verdicts = row.get("status") in OK_STATUSES
        by_table[row["table_id"]].append(Run(row, reconciliations.get(key) if verdicts else None,
                                             validations.get(key, []) if verdicts else [],
                                             first_reconciled.get(key) if verdicts else None))
    extractions = {f"{project}.{dataset}.{t.target_table}": outcomes.read(config.gcs.bucket, config.gcs.prefix,
                                                                           t.target_table) for t in config.tables}
    order = list(extractions) + sorted(t for t in by_table if t not in extractions)  # never-loaded ones too
    return [TableRuns(t, by_table.get(t, []), extractions.get(t)) for t in order]


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#f5f6f8}
header{background:#1d2b3a;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{opacity:.8;font-size:13px}main{padding:18px 28px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 18px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;min-width:130px}
.card b{display:block;font-size:22px}.card.bad{background:#fdecea;color:#8e1b1b;border:1px solid #c62828}
section.table{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;padding:14px 18px;margin:0 0 22px;
content-visibility:auto;contain-intrinsic-size:auto 1200px}
section.table.has-failures{border-left:6px solid #c62828}
section h2{margin:0 0 8px;font-size:18px}section h2 .id{font-weight:normal;color:#66707a;font-size:13px}
p.extraction{margin:0 0 8px;font-size:13px;color:#55606b}p.extraction.bad{color:#8e1b1b;font-weight:600}
table.runs{border-collapse:collapse;width:100%;margin-top:10px;font-size:13px}
table.runs th,table.runs td{padding:4px 5px;border-bottom:1px solid #e3e6ea;text-align:right;white-space:nowrap}
table.runs th{background:#eef1f4;position:sticky;top:0}table.runs th.l{text-align:left}
table.runs td:nth-child(n+2):nth-child(-n+5),table.runs td:nth-child(n+12){text-align:left}
table.runs td:nth-child(n+12){white-space:normal}table.runs td:nth-child(2){font-size:12px}
table.runs tr.has-note td{border-bottom:0}
table.runs tr.note td{white-space:normal;overflow-wrap:anywhere;text-align:left;padding:0 8px 6px 40px;color:#55606b}
tr.failed td{background:#fdecea;color:#8e1b1b}tr.failed td:nth-child(n+12){font-weight:700}
table.runs tr.note.failed td{color:#8e1b1b}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e8f5e9;color:#1b5e20}
.badge.bad{background:#c62828;color:#fff}.badge.wait{background:#fff3e0;color:#8a4b00}.badge.none{background:#eceff1;color:#455a64}
.scroll{overflow-x:auto}
label.filter{display:inline-block;margin:0 0 12px;font-size:13px}
body.only-failures tbody tr:not(.failed){display:none}body.only-failures section.table:not(.has-failures){display:none}
""" + CHART_CSS

# The render check lays out a sample of charts (those on top), or every one with #check-every-chart
# (the e2e test): asking all at load would lay out every section that `content-visibility` skips.
SCRIPT = """
(function(){
  var box=document.getElementById('only-failures');
  if(box){box.addEventListener('change',function(){document.body.classList.toggle('only-failures',box.checked);});}
  function check(){
    var charts=document.querySelectorAll('svg.chart'),every=location.hash==='#check-every-chart',checked=0,shown=0,withBars=0;
    for(;checked<charts.length&&(every||checked<6);checked++){
      var svg=charts[checked],r=svg.getBoundingClientRect(),bars=svg.querySelector('g.bars');
      if(r.width>0&&r.height>0){shown++;}
      if(bars&&bars.getBBox().height>0){withBars++;}
    }
    document.body.setAttribute('data-checked-charts',String(checked));
    document.body.setAttribute('data-rendered-charts',String(shown));
    document.body.setAttribute('data-charts-with-bars',String(withBars));
  }
  if(document.readyState==='complete'){check();}else{window.addEventListener('load',check);}
})();
"""
BAD_BADGES = ("mismatch", "unverified", "failed", "refused", "error", "never loaded", "extraction failed")
NONE_BADGES = ("–", "stale", "duplicate", "unknown", "superseded")
COLUMNS = ('<th>#</th><th class="l">run</th><th class="l">mode</th><th class="l">load</th><th class="l">extracted (UTC)</th>'
           '<th data-field="rows_inserted">inserted</th><th data-field="rows_updated">updated</th>'
           '<th data-field="rows_deleted">deleted</th><th data-field="source_rows">source rows</th>'
           '<th data-field="bytes">bytes</th><th data-field="load_seconds">to load</th>'
           '<th class="l">reconciliation</th><th class="l">validation</th>')


def _badge(text: str) -> str:
    kind = ("bad" if text in BAD_BADGES else "wait" if text == "pending" else "none" if text in NONE_BADGES else "")
    return f'<span class="badge{" " + kind if kind else ""}">{_e(text)}</span>'


def _count(value: object) -> str:
    if value is None:
        return "<td></td>"
    return f"<td>{value:,}</td>" if isinstance(value, int) else f"<td>{_e(value)}</td>"


def _measured(value: float | None, unit: str) -> str:
    """A cell whose text is rounded: the exact value rides along in `data-v`."""
    return "<td></td>" if value is None else f'<td data-v="{raw(value)}">{_e(fmt(value, unit))}</td>'


def _time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def _extraction_line(table: TableRuns, generated: datetime) -> str:
    """The table's last extraction, as `status` shows it; red with its error when it failed after
    the newest applied run (nothing of it reaches the ledger)."""
    if table.extraction is None:
        return ""
    text = f"last extraction {_time(table.extraction.at)} UTC: {extraction_text(table.extraction, generated)}"
    return f'<p class="extraction{" bad" if table.extraction_failed else ""}">{_e(text)}</p>'


def _never_loaded_section(index: int, table: TableRuns, generated: datetime) -> str:
    return (f'<section class="table has-failures" id="table-{index}" data-table="{_e(table.table_id)}">'
            f'<h2>{_e(table.name)} <span class="id">{_e(table.table_id)}</span> {_badge("never loaded")}</h2>'
            f'{_extraction_line(table, generated)}'
            '<p>No snapshot of this configured table has been applied: its extraction or load has not run, or '
            'failed (see `matrix-sync status` and the alerts).</p></section>')


def _charts(index: int, runs: list[Run]) -> str:
    """Numbered as the runs table is; duplicates (nothing loaded) are left out."""
    charted = [(number, run) for number, run in enumerate(runs, start=1) if run.status != "duplicate"]
    marks = [RunMark(number, run.failed, run["mode"] == "full") for number, run in charted]
    shown = [run for _, run in charted]
    changes = [Series(key, label, color, [float(r.count(key)) for r in shown]) for key, label, color in SERIES]
    durations = [Series("load_seconds", "to load commit", "#6a1b9a", [r.load_seconds for r in shown]),
                 Series("verdict_seconds", "to verdicts", "#00838f", [r.verdict_seconds for r in shown])]
    sizes = [Series("bytes", "bytes", "#546e7a", [None if r["bytes"] is None else float(r["bytes"]) for r in shown])]
    return (bar_chart(f"changes-{index}", "rows inserted / updated / deleted per run", marks, changes)
            + bar_chart(f"durations-{index}", "seconds from extraction start", marks, durations, "s")
            + bar_chart(f"bytes-{index}", "bytes shipped per run", marks, sizes, "B"))


def _run_row(number: int, run: Run) -> str:
    """The run's cells, and under them a row with its message (the reason of a failure), wrapped."""
    recon = run.reconciliation or {}
    checks = ", ".join(run.failed_checks)
    differences = ", ".join(f"{recon[k]:,} {label}" for k, label in DIFFERENCE_KINDS if recon.get(k))
    counted = f" {recon['source_rows']}→{recon.get('target_rows')}" if recon.get("source_rows") is not None else ""
    message = " ".join(str(m) for m in (run["message"], recon.get("message")) if m)
    classes = " ".join(c for c in ("failed" if run.failed else "", "has-note" if message else "") if c)
    row = (f'<tr{f" class=\"{classes}\"" if classes else ""} data-run="{_e(run["run_id"])}">'
           f'<td>{number}</td><td>{_e(run["run_id"])}</td><td>{_e(run["mode"] or "")}</td><td>{_badge(run.status)}</td>'
           f'<td>{_e(_time(run["extracted_at"]))}</td>'
           + "".join(_count(run[key]) for key in ("rows_inserted", "rows_updated", "rows_deleted", "source_rows"))
           + _measured(None if run["bytes"] is None else float(run["bytes"]), "B") + _measured(run.load_seconds, "s")
           + f'<td>{_badge(run.verdict)}{_e(counted)}{_e(f" ({differences})") if differences else ""}</td>'
           f'<td>{_badge(run.validation)}{_e(" " + checks) if checks else ""}</td></tr>')
    if not message:
        return row
    return f'{row}<tr class="note{" failed" if run.failed else ""}"><td colspan="13">↳ {_e(message)}</td></tr>'


def _table_section(index: int, table: TableRuns, generated: datetime) -> str:
    runs = table.runs
    if not runs:
        return _never_loaded_section(index, table, generated)
    latest = runs[-1]
    status = _badge("extraction failed" if table.extraction_failed else "failed" if latest.failed else latest.verdict)
    failed_runs = sum(r.failed for r in runs)
    return (
        f'<section class="table{" has-failures" if table.failures else ""}" id="table-{index}" data-table="{_e(table.table_id)}">'
        f'<h2>{_e(table.name)} <span class="id">{_e(table.table_id)}</span> {status}'
        f'{f" <span class=\"badge bad\">{failed_runs} failed run(s)</span>" if failed_runs else ""}</h2>'
        f'{_extraction_line(table, generated)}<div class="charts">{_charts(index, runs)}</div>'
        f'<div class="scroll"><table class="runs"><thead><tr>{COLUMNS}</tr></thead><tbody>'
        f'{"".join(_run_row(number, run) for number, run in enumerate(runs, start=1))}</tbody></table></div></section>')


def render_html(config: Config, tables: list[TableRuns], generated: datetime | None = None) -> str:
    generated = generated or datetime.now(UTC)
    runs = sum(len(t.runs) for t in tables)
    failures = sum(t.failures for t in tables)
    changed = sum(r.count(k) for t in tables for r in t.runs for k, _, _ in SERIES)
    target = f"{config.bigquery.project}.{config.bigquery.dataset}"
    cards = (f'<div class="cards"><div class="card"><b>{len(tables)}</b>tables</div><div class="card"><b>{runs}</b>runs</div>'
             f'<div class="card"><b>{changed:,}</b>rows changed</div>'
             f'<div class="card{" bad" if failures else ""}" id="failures"><b>{failures}</b>failed runs or extractions</div>'
             '</div>')
    body = "".join(_table_section(i, t, generated) for i, t in enumerate(tables)) or "<p>No runs recorded yet.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>matrix-sync report · {_e(target)}</title><style>{CSS}</style></head>'
        f'<body data-failures="{failures}"><header><h1>matrix-sync run report</h1>'
        f'<div class="meta">{_e(target)} · source {_e(_safe_source(config))} · generated {_e(generated.strftime("%Y-%m-%d %H:%M:%S UTC"))}'
        '</div></header><main>'
        f'{cards}<label class="filter"><input type="checkbox" id="only-failures"> failures only</label>{body}</main>'
        f'<script>{SCRIPT}</script></body></html>')


def _safe_source(config: Config) -> str:
    """The source URL without any password it holds (user part, query or connection string)."""
    from shared.secrets import redact, register_url

    register_url(config.source.url)
    return redact(config.source.url)


def write_report(config: Config, output: Path, limit: int = 200) -> list[TableRuns]:
    tables = collect(config, limit)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(config, tables), encoding="utf-8")
    return tables


def _point_at_stack() -> None:
    """Emulator variables already set win; else a running local stack; else the real services."""
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        return
    from matrix_sync.environment import running_stack, use_stack

    stack = running_stack()
    if stack is not None:
        use_stack(stack)


@click.command("report")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), required=True, help="the HTML file to write")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True, help="latest runs shown per table")
def report(config_path: Path, output: Path, limit: int) -> None:
    """Writes one self-contained HTML page: per table, changes, durations, bytes and verdicts of each run."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError

    from matrix_sync.stack import StackError

    try:
        config = load_config(config_path)
        _point_at_stack()
        tables = write_report(config, output, limit)
    except (ConfigError, StackError) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except (GoogleAPICallError, GoogleAuthError) as error:
        click.echo(f"error: cannot read the results from BigQuery: {' '.join(str(error).split())[:300]}", err=True)
        sys.exit(2)
    failures = sum(t.failures for t in tables)
    click.echo(f"report written to {output}: {len(tables)} table(s), {sum(len(t.runs) for t in tables)} run(s), "
               f"{failures} failed")
