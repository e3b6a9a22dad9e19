"""`matrix-sync report`: one self-contained HTML page of what the chain did, table by table.

Reads the ledger (`_sync_ledger`) and the results tables (`_sync_reconciliations`,
`_sync_validations`) of the config's dataset and writes a single HTML file: inline CSS, a few lines
of inline JavaScript (a "failures only" filter and a render check), and charts as inline SVG
generated here, so it opens anywhere without a network. Per table: rows inserted, updated and
deleted per run, durations and bytes per run, the reconciliation and validation verdicts, and a
table of runs. Anything that failed is red.
"""
from __future__ import annotations

import html
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from google.cloud import bigquery

from shared import bigquery as bq
from shared.clients import reset_clients
from shared.config import Config, ConfigError, load_config
from shared.identifiers import quote_bigquery
from shared.topology import LEDGER_TABLE, RECONCILIATION_TABLE, VALIDATION_TABLE

FAILED_STATUSES = {"refused"}
OK_STATUSES = {"applied", "duplicate"}
SERIES = (("rows_inserted", "inserted", "#2e7d32"), ("rows_updated", "updated", "#1565c0"),
          ("rows_deleted", "deleted", "#ef6c00"))
FAIL = "#c62828"
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

    @property
    def name(self) -> str:
        return self.table_id.rsplit(".", 1)[-1]

    @property
    def failures(self) -> int:
        return sum(r.failed for r in self.runs)


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
    """The config's tables (those never loaded with no runs), then every other table in the dataset's
    ledger, its last `limit` runs each;
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
    configured = [f"{project}.{dataset}.{t.target_table}" for t in config.tables]
    order = configured + sorted(t for t in by_table if t not in configured)  # never-loaded ones too
    return [TableRuns(t, by_table.get(t, [])) for t in order]


# --- SVG -----------------------------------------------------------------------------------------

def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(value: float, unit: str = "") -> str:
    if unit == "B":
        for name, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def bar_chart(chart_id: str, title: str, runs: Sequence[Run], series: Sequence[tuple[str, str, str, list[float | None]]],
              unit: str = "") -> str:
    """Grouped bars, one group per run; each bar carries data-run, data-series and data-value."""
    width, height, left, bottom, top = 410, 200, 58, 34, 26
    plot_w, plot_h = width - left - 12, height - top - bottom
    values = [v for _, _, _, vs in series for v in vs if v is not None]
    peak = _nice_max(max(values, default=0))
    group_w = plot_w / max(len(runs), 1)
    bar_w = max(1.0, min(22.0, (group_w * 0.8) / max(len(series), 1)))
    parts = [(f'<svg class="chart" id="{_e(chart_id)}" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'),
             f'<text class="chart-title" x="{left}" y="16">{_e(title)}</text>']
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - 12}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(_fmt(peak * fraction, unit))}</text>')
    for index, run in enumerate(runs):
        x0 = left + index * group_w
        if run.failed:
            parts.append(f'<rect class="fail-band" x="{x0:.1f}" y="{top}" width="{group_w:.1f}" height="{plot_h}" fill="{FAIL}" '
                         f'fill-opacity="0.12"><title>{_e(run["run_id"])}: failed</title></rect>')
        start = x0 + (group_w - bar_w * len(series)) / 2
        for position, (key, label, color, vs) in enumerate(series):
            value = vs[index]
            bar_h = 0.0 if value is None else plot_h * value / peak
            shown = "n/a" if value is None else _fmt(value, unit)
            parts.append(
                f'<rect class="bar" data-run="{_e(run["run_id"])}" data-series="{_e(key)}" '
                f'data-value="{"" if value is None else _e(round(value, 3) if unit == "s" else int(value))}" '
                f'x="{start + position * bar_w:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                f'height="{bar_h:.1f}" fill="{color}"><title>run {index + 1} ({_e(run["run_id"])}): {shown} {_e(label)}</title></rect>')
        if len(runs) <= 40 or index % max(1, len(runs) // 20) == 0:
            colour = f' fill="{FAIL}"' if run.failed else ""
            parts.append(f'<text class="run-label" x="{x0 + group_w / 2:.1f}" y="{height - bottom + 14}" '
                         f'text-anchor="middle"{colour}>{index + 1}</text>')
    legend_x = left
    for _, label, color, _ in series:
        parts.append(f'<rect x="{legend_x}" y="{height - 12}" width="10" height="10" fill="{color}"/>'
                     f'<text class="legend" x="{legend_x + 14}" y="{height - 3}">{_e(label)}</text>')
        legend_x += 24 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#f5f6f8}
header{background:#1d2b3a;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header .meta{opacity:.8;font-size:13px}main{padding:18px 28px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:0 0 18px}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 2px #0002;min-width:130px}
.card b{display:block;font-size:22px}.card.bad{background:#fdecea;color:#8e1b1b;border:1px solid #c62828}
section.table{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0002;padding:14px 18px;margin:0 0 22px}
section.table.has-failures{border-left:6px solid #c62828}
section h2{margin:0 0 8px;font-size:18px}section h2 .id{font-weight:normal;color:#66707a;font-size:13px}
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart{max-width:100%;height:auto;background:#fafbfc;border-radius:6px}
.chart .chart-title{font-weight:600;font-size:13px}.chart .tick,.chart .run-label,.chart .legend{font-size:11px;fill:#55606b}
.chart .grid{stroke:#dde1e6;stroke-width:1}
table.runs{border-collapse:collapse;width:100%;margin-top:10px;font-size:13px}
table.runs th,table.runs td{padding:4px 8px;border-bottom:1px solid #e3e6ea;text-align:right;white-space:nowrap}
table.runs th{background:#eef1f4;position:sticky;top:0}table.runs td.l,table.runs th.l{text-align:left}
tr.failed td{background:#fdecea;color:#8e1b1b}tr.failed td.verdict{font-weight:700}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e8f5e9;color:#1b5e20}
.badge.bad{background:#c62828;color:#fff}.badge.wait{background:#fff3e0;color:#8a4b00}.badge.none{background:#eceff1;color:#455a64}
.scroll{overflow-x:auto}.msg{max-width:420px;overflow:hidden;text-overflow:ellipsis;text-align:left!important}
label.filter{display:inline-block;margin:0 0 12px;font-size:13px}
body.only-failures tbody tr:not(.failed){display:none}body.only-failures section.table:not(.has-failures){display:none}
"""

SCRIPT = """
(function(){
  var box=document.getElementById('only-failures');
  if(box){box.addEventListener('change',function(){document.body.classList.toggle('only-failures',box.checked);});}
  function check(){
    var charts=document.querySelectorAll('svg.chart'),shown=0,bars=0;
    charts.forEach(function(svg){var r=svg.getBoundingClientRect();if(r.width>0&&r.height>0){shown++;}});
    document.querySelectorAll('svg.chart rect.bar').forEach(function(b){if(b.getBBox().height>0){bars++;}});
    document.body.setAttribute('data-rendered-charts',String(shown));
    document.body.setAttribute('data-rendered-bars',String(bars));
  }
  if(document.readyState==='complete'){check();}else{window.addEventListener('load',check);}
})();
"""


def _badge(text: str) -> str:
    kind = ("bad" if text in ("mismatch", "unverified", "failed", "refused", "error", "never loaded") else "wait" if text == "pending"
            else "none" if text in ("–", "stale", "duplicate", "unknown", "superseded") else "")
    return f'<span class="badge {kind}">{_e(text)}</span>'


def _cell(field_name: str, value: object, text: str | None = None, css: str = "") -> str:
    shown = "" if value is None else (text if text is not None else f"{value:,}" if isinstance(value, int) else str(value))
    raw = "" if value is None else value
    return f'<td class="{css}" data-field="{_e(field_name)}" data-value="{_e(raw)}">{_e(shown)}</td>'


def _time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def _never_loaded_section(index: int, table: TableRuns) -> str:
    return (f'<section class="table has-failures" id="table-{index}" data-table="{_e(table.table_id)}">'
            f'<h2>{_e(table.name)} <span class="id">{_e(table.table_id)}</span> {_badge("never loaded")}</h2>'
            '<p>No snapshot of this configured table has been applied: its extraction or load has not run, or '
            'failed (see `matrix-sync status` and the alerts).</p></section>')


def _table_section(index: int, table: TableRuns) -> str:
    runs = table.runs
    if not runs:
        return _never_loaded_section(index, table)
    charted = [r for r in runs if r.status != "duplicate"]
    counts = bar_chart(f"changes-{index}", "rows inserted / updated / deleted per run", charted,
                       [(key, label, color, [float(r.count(key)) for r in charted]) for key, label, color in SERIES])
    durations = bar_chart(f"durations-{index}", "seconds from extraction start", charted,
                          [("load_seconds", "to load commit", "#6a1b9a", [r.load_seconds for r in charted]),
                           ("verdict_seconds", "to verdicts", "#00838f", [r.verdict_seconds for r in charted])], unit="s")
    sizes = bar_chart(f"bytes-{index}", "bytes shipped per run", charted,
                      [("bytes", "bytes", "#546e7a", [None if r["bytes"] is None else float(r["bytes"]) for r in charted])],
                      unit="B")
    rows = []
    for number, run in enumerate(runs, start=1):
        recon = run.reconciliation or {}
        checks = ", ".join(run.failed_checks)
        differences = ", ".join(f"{recon[k]:,} {label}" for k, label in DIFFERENCE_KINDS if recon.get(k))
        counted = f" {recon['source_rows']}→{recon.get('target_rows')}" if recon.get("source_rows") is not None else ""
        message = " ".join(str(m) for m in (run["message"], recon.get("message")) if m)
        rows.append(
            f'<tr class="{"failed" if run.failed else ""}" data-run="{_e(run["run_id"])}">'
            f'<td>{number}</td><td class="l">{_e(run["run_id"])}</td><td class="l">{_e(run["mode"] or "")}</td>'
            f'<td class="l">{_badge(run.status)}</td><td class="l">{_e(_time(run["extracted_at"]))}</td>'
            + _cell("rows_inserted", run["rows_inserted"]) + _cell("rows_updated", run["rows_updated"])
            + _cell("rows_deleted", run["rows_deleted"]) + _cell("source_rows", run["source_rows"])
            + _cell("bytes", run["bytes"], None if run["bytes"] is None else _fmt(float(run["bytes"]), "B"))
            + _cell("load_seconds", None if run.load_seconds is None else round(run.load_seconds, 2),
                    None if run.load_seconds is None else _fmt(run.load_seconds, "s"))
            + f'<td class="l verdict" data-field="reconciliation">{_badge(run.verdict)}'
            f'{_e(counted)}'
            f'{_e(f" ({differences})") if differences else ""}</td>'
            f'<td class="l verdict" data-field="validation">{_badge(run.validation)}{_e(" " + checks) if checks else ""}</td>'
            f'<td class="msg" title="{_e(message)}">{_e(message)}</td></tr>')
    latest = runs[-1] if runs else None
    status = (_badge("failed") if latest and latest.failed else _badge(latest.verdict if latest else "–"))
    return (
        f'<section class="table{" has-failures" if table.failures else ""}" id="table-{index}" data-table="{_e(table.table_id)}">'
        f'<h2>{_e(table.name)} <span class="id">{_e(table.table_id)}</span> {status}'
        f'{f" <span class=\"badge bad\">{table.failures} failed run(s)</span>" if table.failures else ""}</h2>'
        f'<div class="charts">{counts}{durations}{sizes}</div>'
        '<div class="scroll"><table class="runs"><thead><tr><th>#</th><th class="l">run</th><th class="l">mode</th><th class="l">load</th>'
        '<th class="l">extracted (UTC)</th><th>inserted</th><th>updated</th><th>deleted</th><th>source rows</th>'
        '<th>bytes</th><th>to load</th><th class="l">reconciliation</th><th class="l">validation</th><th class="l">message</th>'
        f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>')


def render_html(config: Config, tables: list[TableRuns], generated: datetime | None = None) -> str:
    generated = generated or datetime.now(UTC)
    runs = sum(len(t.runs) for t in tables)
    failures = sum(t.failures for t in tables)
    changed = sum(r.count(k) for t in tables for r in t.runs for k, _, _ in SERIES)
    target = f"{config.bigquery.project}.{config.bigquery.dataset}"
    cards = (f'<div class="cards"><div class="card"><b>{len(tables)}</b>tables</div><div class="card"><b>{runs}</b>runs</div>'
             f'<div class="card"><b>{changed:,}</b>rows changed</div>'
             f'<div class="card{" bad" if failures else ""}" id="failures"><b>{failures}</b>failed runs</div></div>')
    body = "".join(_table_section(i, t) for i, t in enumerate(tables)) or "<p>No runs recorded yet.</p>"
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
    from matrix_sync.environment import running_stack

    stack = running_stack()
    if stack is not None:
        os.environ.update(stack.env())
        reset_clients()


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
