"""latest.md: medians of the repeats, ratios against the competitors, the targets, and the noise."""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from bench.datagen import size_label

TARGETS = {
    "initial": "ours >= 2x dlt rows/s",
    "change": "delta cycle <= 0.5x dlt merge rerun, shipping <= 3% of full bytes",
    "reconcile": "0 differences no slower than reladiff, 100 differences <= 0.35x reladiff",
    "memory": "10M peak within 1.2x of 100k",
}
COMPETITOR_SIDES = {"dlt": ("dlt", "dlt-merge"), "reladiff": ("reladiff",)}
RECONCILE_MODES = (("ours", "stored hashes"), ("ours-keys", "compare-keys"))


def _columnar_rate(m: dict[str, Any]) -> str:
    """Results from before the columnar hasher have no such numbers."""
    return _n(m["columnar_rows_per_s"]) if "columnar_rows_per_s" in m else "–"


def _columnar_ratio(m: dict[str, Any]) -> str:
    return f"{m['ratio_columnar_vs_sha256']:.1f}x" if "ratio_columnar_vs_sha256" in m else "–"


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 and statistics.median(values) else 0.0


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _bytes(value: float | None) -> str:
    """In the unit that shows the value: a delta's 12.7 kB is not 0.0 MB."""
    if value is None:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value:,.0f} B"


def _competitor(summary: dict[str, Any], name: str) -> str:
    """`dlt 1.31.0`, or `dlt not run` when no measurement of it is in the summary."""
    ran = any(m["side"] in COMPETITOR_SIDES[name] for m in summary["measurements"])
    version = summary["versions"].get(name)
    return f"{name} {version or 'version unknown'}" if ran else f"{name} not run"


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}x"


class Groups:
    def __init__(self, measurements: list[dict[str, Any]]) -> None:
        self.groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for m in measurements:
            self.groups[(m["scenario"], m["size"], m["side"], m.get("source"), m.get("planted"))].append(m)
        self.spreads: list[float] = []

    def get(self, scenario: str, size: int, side: str, metric: str, source: str | None = None,
            planted: int | None = None, spread: bool = False) -> float | None:
        values = [m[metric] for m in self.groups.get((scenario, size, side, source, planted), []) if m.get(metric) is not None]
        if spread and values:
            self.spreads.append(_spread(values))
        return _median(values)

    def has(self, scenario: str) -> bool:
        return any(key[0] == scenario for key in self.groups)

    def sizes(self, scenario: str) -> list[int]:
        return sorted({key[1] for key in self.groups if key[0] == scenario})


def render(summary: dict[str, Any]) -> str:
    g = Groups(summary["measurements"])
    out: list[str] = [f"# matrix-sync benchmarks — {summary['finished']}", ""]
    out.append(f"`{summary['command']}` · sizes {', '.join(size_label(s) for s in summary['sizes'])} · "
               f"{summary['repeats']} repeat(s), sides interleaved · medians shown · {_competitor(summary, 'dlt')}, "
               f"{_competitor(summary, 'reladiff')} · git {_head(summary['git']['head'])}"
               f"{' + ' + str(summary['git']['uncommitted_files']) + ' uncommitted files' if summary['git']['uncommitted_files'] else ''}")
    out.append("")
    verdicts: list[str] = []

    if g.has("initial"):
        out += ["## (1) Initial extract + hash + Parquet", "",
                ("ours-local: `extract_table` (ADBC into Arrow in 50k-row chunks read one ahead, columnar convert + "
                "check + hash on two threads with the per-row path as fallback, fingerprint, Parquet parts + key index + manifest, "
                "MD5) with `shared.gcs.upload` swapped for a local file write; "
                "ours-gcs: the same, uploading to fake-gcs-server on loopback; dlt: `sql_database(backend=\"pyarrow\")` "
                "→ filesystem destination, Parquet, `replace`. Clock: the extraction call only (after imports)."), "",
                "| size | source | ours-local rows/s | ours-gcs rows/s | dlt rows/s | ours-local / dlt | ours-gcs / dlt | ours bytes (parts) | dlt bytes |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        ratios = []
        for size in g.sizes("initial"):
            for source in ("sqlite", "postgresql"):
                local = g.get("initial", size, "ours-local", "rows_per_s", source, spread=True)
                gcs = g.get("initial", size, "ours-gcs", "rows_per_s", source, spread=True)
                dlt = g.get("initial", size, "dlt", "rows_per_s", source, spread=True)
                if local is None and dlt is None:
                    continue
                if local and dlt:
                    ratios.append(local / dlt)
                out.append(f"| {size_label(size)} | {source} | {_n(local)} | {_n(gcs)} | {_n(dlt)} | {_ratio(local, dlt)} | "
                           f"{_ratio(gcs, dlt)} | {_bytes(g.get('initial', size, 'ours-local', 'bytes', source))} | "
                           f"{_bytes(g.get('initial', size, 'dlt', 'bytes', source))} |")
        if ratios:
            verdicts.append(f"(1) {TARGETS['initial']}: ours-local/dlt = {min(ratios):.2f}x–{max(ratios):.2f}x → "
                            f"{'MET' if min(ratios) >= 2 else 'NOT MET'}")
        out.append("")

    if g.has("change"):
        out += ["## (2) Change cycle after 1% updates, 0.5% inserts, 0.5% deletes", "",
                ("ours: `extract_all` + `wait_for_chain` on a LocalStack (fake-gcs-server, Pub/Sub emulator, bqemulator, "
                "functions-framework loader/reconciler/validator); *extract* is the extractor alone, *end to end* adds load "
                "(MERGE), reconciliation and validation. dlt: `sql_database(backend=\"pyarrow\")` rerun with "
                "`write_disposition=\"merge\"` (primary key `id`) into DuckDB; its time is its whole run. "
                "*data bytes*: what the loader loads (parts + deleted keys); *all bytes*: every object the extractor uploaded "
                "(data, key index or a delta's index patch, manifest); *cloud index*: the whole key index the loader "
                "compacts from a delta's patch inside the cloud (written there, never shipped)."), "",
                "| size | variant | extract s | end to end s | rows shipped / written | data bytes | all bytes | cloud index | MERGE ins/upd/del | rows in target after |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for size in g.sizes("change"):
            for side in ("ours-delta", "ours-full", "dlt-merge"):
                e2e = g.get("change", size, side, "end_to_end_s", spread=True)
                if e2e is None:
                    continue
                if side == "dlt-merge":
                    out.append(f"| {size_label(size)} | dlt merge | {_n(e2e, 2)} | {_n(e2e, 2)} | "
                               f"{_n(g.get('change', size, side, 'rows_written'))} | {_bytes(g.get('change', size, side, 'bytes'))} | "
                               f"{_bytes(g.get('change', size, side, 'bytes'))} | – | – | {_n(g.get('change', size, side, 'dest_rows'))} "
                               f"(source: {_n(g.get('change', size, side, 'source_rows'))}) |")
                    continue
                shipped = (g.get("change", size, side, "rows_shipped") or 0) + (g.get("change", size, side, "deleted_keys_shipped") or 0)
                out.append(f"| {size_label(size)} | {side.replace('-', ' ')} | {_n(g.get('change', size, side, 'extract_s'), 2)} | "
                           f"{_n(e2e, 2)} | {_n(shipped)} | {_bytes(g.get('change', size, side, 'bytes_data'))} | "
                           f"{_bytes(g.get('change', size, side, 'bytes_all'))} | "
                           f"{_bytes(g.get('change', size, side, 'bytes_compacted_index')) if side == 'ours-delta' else '–'} | "
                           f"{_n(g.get('change', size, side, 'rows_inserted'))}/{_n(g.get('change', size, side, 'rows_updated'))}/"
                           f"{_n(g.get('change', size, side, 'rows_deleted'))} | {_n(g.get('change', size, side, 'dest_rows'))} |")
        out.append("")
        for size in g.sizes("change"):
            delta_e2e = g.get("change", size, "ours-delta", "end_to_end_s")
            delta_x = g.get("change", size, "ours-delta", "extract_s")
            dlt = g.get("change", size, "dlt-merge", "end_to_end_s")
            data_share = _share(g.get("change", size, "ours-delta", "bytes_data"), g.get("change", size, "ours-full", "bytes_data"))
            all_share = _share(g.get("change", size, "ours-delta", "bytes_all"), g.get("change", size, "ours-full", "bytes_all"))
            out.append(f"- {size_label(size)}: delta end to end / dlt merge = {_ratio(delta_e2e, dlt)}; delta extractor / dlt merge = "
                       f"{_ratio(delta_x, dlt)}; delta data bytes = {_pct(data_share)} of full; delta all bytes = {_pct(all_share)} of full.")
            if delta_e2e and dlt and data_share is not None and all_share is not None:
                met = delta_e2e / dlt <= 0.5 and all_share <= 0.03
                verdicts.append(f"(2) {size_label(size)}: {TARGETS['change']}: end to end {delta_e2e / dlt:.2f}x, "
                                f"all bytes shipped {_pct(all_share)} (data bytes {_pct(data_share)}) → "
                                f"{'MET' if met else 'NOT MET'}")
        out.append("")
        base = [(size, g.get("base", size, "ours-full", "end_to_end_s"), g.get("base", size, "dlt-merge", "end_to_end_s"))
                for size in g.sizes("base")]
        if base:
            out.append("Initial load for reference (one run): " + "; ".join(
                f"{size_label(s)}: ours full cycle {_n(o, 1)} s, dlt first merge {_n(d, 1)} s" for s, o, d in base))
            out.append("")

    if g.has("reconcile"):
        out += ["## (3) Reconciliation", "",
                ("Source SQLite, target BigQuery (bqemulator) loaded by the chain. *compare-keys*: the operator's "
                "`matrix_sync.compare.compare_table` (source hashed by the extractor's code, both hashes of every "
                "BigQuery row rebuilt from its data in SQL while the source is read, one level of segment "
                "fingerprints as deep as the table needs, differing segments fetched). *stored hashes*: "
                "`compare-keys --stored-hashes`, the same with BigQuery's stored `_key_hash`/`_row_hash` "
                "fingerprinted by segment in one GROUP BY instead of hashes rebuilt from the data (blind to "
                "values edited in BigQuery behind their hash columns). reladiff: "
                "`diff_tables(..., algorithm=\"hashdiff\")` over every column, PostgreSQL against a DuckDB copy "
                "(reladiff has no SQLite driver). Planted: half updates, a quarter deletes, a quarter inserts."), "",
                ("| size | planted | ours compare-keys s | ours stored hashes s | reladiff s | compare-keys / reladiff | "
                "stored hashes / reladiff | differing keys found (compare-keys / stored hashes / reladiff) |"),
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for size in g.sizes("reconcile"):
            for planted in (0, 100):
                keys = g.get("reconcile", size, "ours-keys", "seconds", planted=planted, spread=True)
                print_ = g.get("reconcile", size, "ours", "seconds", planted=planted, spread=True)
                theirs = g.get("reconcile", size, "reladiff", "seconds", planted=planted, spread=True)
                found = " / ".join(_n(g.get("reconcile", size, side, "differing_keys", planted=planted))
                                   for side in ("ours-keys", "ours", "reladiff"))
                out.append(f"| {size_label(size)} | {planted} | {_n(keys, 2)} | {_n(print_, 2)} | {_n(theirs, 2)} | "
                           f"{_ratio(keys, theirs)} | {_ratio(print_, theirs)} | {found} |")
        out.append("")
        for size in g.sizes("reconcile"):
            keys_source = _median(g.get("reconcile", size, "ours-keys", "source_seconds", planted=p) for p in (0, 100))
            print_source = _median(g.get("reconcile", size, "ours", "source_seconds", planted=p) for p in (0, 100))
            if keys_source is not None or print_source is not None:
                out.append(f"- {size_label(size)}: reading and hashing the source took {_n(keys_source, 1)} s of compare-keys "
                           f"(the BigQuery side runs meanwhile; the rest is what outlasts it) and {_n(print_source, 1)} s "
                           "of stored hashes (the rest is what outlasts it: its GROUP BY, deeper levels and fetch).")
            verdicts.append(_reconcile_verdict(g, size))
        out.append("")

    memory = [(size, _peak(g, size, "ours-local"), _peak(g, size, "dlt")) for size in
              sorted(set(g.sizes("initial")) | set(g.sizes("memory")))]
    memory = [m for m in memory if m[1] is not None]
    if memory:
        smallest = memory[0][1]
        out += ["## (4) Extractor peak memory (VmHWM of the worker process, SQLite source, chunk 50,000 rows)", "",
                f"| size | ours peak MB | vs {size_label(memory[0][0])} | dlt peak MB |", "|---|---:|---:|---:|"]
        for size, ours, dlt in memory:
            out.append(f"| {size_label(size)} | {_n(ours, 1)} | {ours / smallest:.2f}x | {_n(dlt, 1)} |")
        out.append("")
        big = [m for m in memory if m[0] >= 10_000_000]
        base = [m for m in memory if m[0] == 100_000]
        if big and base:
            ratio = big[-1][1] / base[0][1]
            verdicts.append(f"(4) {TARGETS['memory']}: {ratio:.2f}x → {'MET' if ratio <= 1.2 else 'NOT MET'}")

    if g.has("hashing"):
        m = [x for x in summary["measurements"] if x["scenario"] == "hashing"][-1]
        out += ["## (5) Hashing throughput (best of rounds, one core)", "",
                ("The extractor's columnar hasher (`shared.columnar_hash`: canonical texts and frames built per column "
                "with pyarrow.compute, SHA-256 of every key and row of a 10k-row slice in one DataFusion call, 50k-row chunks) and "
                "the per-row reference RowHasher, against bare `hashlib.sha256(buffer).hexdigest()` over the same "
                "canonical row buffers (one digest a row)."), "",
                "| rows | bytes/row | columnar rows/s | RowHasher rows/s | sha256 rows/s | sha256 MB/s "
                "| columnar time / sha256 time | RowHasher time / sha256 time |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
                (f"| {_n(m['rows'])} | {_n(m['bytes_per_row'], 1)} | {_columnar_rate(m)} | {_n(m['rowhasher_rows_per_s'])} | "
                f"{_n(m['sha256_rows_per_s'])} | {_n(m['sha256_bytes_per_s'] / 1e6, 1)} | {_columnar_ratio(m)} | "
                f"{m['ratio_rowhasher_vs_sha256']:.1f}x |"), ""]
        verdicts.append(f"(5) the columnar hasher takes {_columnar_ratio(m)} the time of raw SHA-256 on the same buffers "
                        f"(RowHasher: {m['ratio_rowhasher_vs_sha256']:.1f}x; canonical encoding alone, per row: "
                        f"{m['encode_s'] / m['sha256_s']:.1f}x)")

    if verdicts:
        out += ["## Targets", ""] + [f"- {v}" for v in verdicts] + [""]
    noise = summary["noise"]
    spread = max(g.spreads) if g.spreads else 0.0
    out += ["## Noise", "",
            (f"{summary['machine']['cpus']} cores shared with other work. During the measurements other processes kept "
            f"a median of {noise['other_cores_median']} and at most {noise['other_cores_max']} cores busy; 1-minute load "
            f"average {noise['loadavg_min']}–{noise['loadavg_max']}. Largest spread of repeats within one cell "
            f"((max−min)/median): {spread:.0%}."), ""]
    out += [f"- {note}" for note in summary.get("notes", [])]
    return "\n".join(out).rstrip() + "\n"


def _reconcile_verdict(g: Groups, size: int) -> str:
    """Both modes of ours against reladiff, with 0 and with 100 planted differences."""
    head = f"(3) {size_label(size)}: {TARGETS['reconcile']}:"
    theirs = [g.get("reconcile", size, "reladiff", "seconds", planted=p) for p in (0, 100)]
    if not all(theirs):
        return f"{head} reladiff not run → not judged"
    judged = []
    for side, name in RECONCILE_MODES:
        ours = [g.get("reconcile", size, side, "seconds", planted=p) for p in (0, 100)]
        if None in ours:
            continue
        clean, planted = (o / t for o, t in zip(ours, theirs, strict=True))
        judged.append(f"{name} {clean:.2f}x / {planted:.2f}x → {'MET' if clean <= 1 and planted <= 0.35 else 'NOT MET'}")
    return f"{head} {'; '.join(judged) or 'ours not run → not judged'}"


def _peak(g: Groups, size: int, side: str) -> float | None:
    """Largest peak of the side's SQLite extractions at this size: from the dedicated memory runs
    when there are any, else from the initial-extract runs."""
    for scenarios in (("memory",), ("initial",)):
        values = [m["peak_rss_mb"] for key, ms in g.groups.items() for m in ms
                  if key[0] in scenarios and key[1] == size and key[2] == side and key[3] == "sqlite"]
        if values:
            return max(values)
    return None


def _head(head: str) -> str:
    return head[:10] if len(head) == 40 else head


def _share(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"
