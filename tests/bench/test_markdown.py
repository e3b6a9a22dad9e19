"""latest.md from made-up and stored measurements, without running anything: the header without
competitors, every target judged (the reconciliation's too), small byte counts readable."""
from __future__ import annotations

import json
from typing import Any

from bench.markdown import render
from bench.run import ROOT

STORED_RECONCILE = ROOT / "bench" / "results" / "20261207T030843Z-s14-reconcile.json"


def _summary(measurements: list[dict[str, Any]], versions: dict[str, str | None] | None = None) -> dict[str, Any]:
    return {"finished": "2026-12-07T00:00:00+00:00", "command": "python -m bench --smoke", "sizes": [2000],
            "repeats": 1, "versions": versions or {"dlt": None, "reladiff": None},
            "git": {"head": "0123456789abcdef", "uncommitted_files": 0}, "machine": {"cpus": 2},
            "measurements": measurements,
            "noise": {"other_cores_median": 0.1, "other_cores_max": 0.2, "loadavg_min": 0.1, "loadavg_max": 0.3}}


def _change(side: str, bytes_data: int, bytes_all: int) -> dict[str, Any]:
    return {"scenario": "change", "size": 2000, "side": side, "repeat": 0, "end_to_end_s": 3.0, "extract_s": 0.5,
            "rows_shipped": 30, "deleted_keys_shipped": 10, "bytes_data": bytes_data, "bytes_all": bytes_all,
            "bytes_compacted_index": 0, "rows_inserted": 10, "rows_updated": 20, "rows_deleted": 10,
            "dest_rows": 2000}


def test_without_competitors_the_header_says_they_did_not_run() -> None:
    markdown = render(_summary([_change("ours-delta", 12_700, 25_300), _change("ours-full", 612_000, 1_480_000)],
                               versions={"dlt": "1.31.0", "reladiff": None}))  # installed, but --no-competitors
    header = markdown.splitlines()[2]
    assert "dlt not run, reladiff not run" in header
    assert "None" not in markdown


def test_small_byte_counts_are_shown_in_a_unit_that_shows_them() -> None:
    markdown = render(_summary([_change("ours-delta", 12_700, 25_300), _change("ours-full", 612_000, 1_480_000)]))
    assert "| 2k | ours delta | 0.50 | 3.00 | 40 | 12.7 kB | 25.3 kB |" in markdown
    assert "| 612.0 kB | 1.5 MB |" in markdown and "0.0 MB" not in markdown


def test_the_reconciliation_target_is_judged_for_both_modes() -> None:
    markdown = render(json.loads(STORED_RECONCILE.read_text()))
    targets = markdown.split("## Targets", 1)[1].split("##", 1)[0]
    assert ("- (3) 1M: 0 differences no slower than reladiff, 100 differences <= 0.35x reladiff: "
            "stored hashes 0.77x / 0.14x → MET; compare-keys 2.19x / 0.32x → NOT MET") in targets


def test_without_reladiff_the_reconciliation_is_not_judged() -> None:
    stored = json.loads(STORED_RECONCILE.read_text())
    ours = [m for m in stored["measurements"] if m["side"] != "reladiff"]
    markdown = render(_summary(ours, versions=stored["versions"]))
    assert "(3) 1M: 0 differences no slower than reladiff, 100 differences <= 0.35x reladiff: reladiff not run" in markdown
    assert "dlt not run, reladiff not run" in markdown
