"""One measurement per process: `python -m bench.worker COMMAND 'JSON ARGS'` prints one JSON line.

Each measurement runs in a fresh interpreter so its peak memory (ru_maxrss) is its own and one side's
caches never help the other. The clock starts after imports and connection set-up and stops when the
output is complete; both sides are timed the same way. "ours" commands run in the project's .venv,
"dlt"/"reladiff" commands in .venv-bench (dlt and the project pin different DuckDB versions).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def command(function: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    COMMANDS[function.__name__.replace("_", "-")] = function
    return function


def peak_rss_mb() -> float:
    """Peak resident memory of this process: VmHWM, the high-water mark of its own address space.

    Not ru_maxrss: Linux records the parent's high-water mark in the child's ru_maxrss when the
    child (spawned by vfork/fork) calls exec, so a worker started by a big orchestrator would report
    the orchestrator's peak. ru_maxrss is kept beside it in the results as `ru_maxrss_mb`.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


# --- ours ----------------------------------------------------------------------------------------

def _ours_config(args: dict[str, Any]):  # -> shared.config.Config
    from shared.config import Config

    return Config.model_validate({
        "source": {"url": args["url"]},
        "tables": [{"name": args["table"], "key": ["id"]}],
        "gcs": {"bucket": args.get("bucket", "bench-local")},
        "bigquery": {"project": args.get("project", "bench-local"), "dataset": args.get("dataset", "bench")},
        "pubsub": {"project": args.get("project", "bench-local")},
        "extract": {"chunk_rows": args.get("chunk_rows", 50_000), "mode": "full"},
    })


def _local_uploads(root: Path) -> None:
    """shared.gcs.upload replaced by a local file write (same bytes, same MD5): the extractor's own
    code path (read, convert, hash, Parquet, MD5, manifest) without the HTTP transfer."""
    from shared import gcs

    def upload(bucket: str, name: str, data: bytes, content_type: str, *, only_if_new: bool = False) -> Any:
        path = root / bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return gcs.ObjectInfo(gcs.uri(bucket, name), len(data), gcs.md5_base64(data))

    gcs.upload = upload


@command
def ours_extract(args: dict[str, Any]) -> dict[str, Any]:
    """A full snapshot of the table with shared.extractor.snapshot.extract_table.

    target "local": Parquet parts, key index and manifest written to a local folder instead of GCS.
    target "gcs": uploaded to the GCS emulator named by STORAGE_EMULATOR_HOST (fake-gcs-server).
    """
    from shared.extractor.snapshot import extract_table
    from shared.extractor.source import connect, discover

    config = _ours_config(args)
    out = Path(args["out"])
    if args.get("target", "local") == "local":
        _local_uploads(out)
    else:
        from shared import gcs

        gcs.ensure_bucket(config.gcs.bucket)
    engine = connect(config.source)
    source = discover(engine, config.tables[0])
    started = time.perf_counter()
    result = extract_table(config, engine, source)
    seconds = time.perf_counter() - started
    engine.dispose()
    written = folder_bytes(out) if args.get("target", "local") == "local" else None
    return {"seconds": seconds, "rows": result.rows, "bytes": result.bytes, "bytes_all_objects": written,
            "parts": result.parts, "rows_per_s": result.rows / seconds, "peak_rss_mb": peak_rss_mb()}


@command
def ours_hashing(args: dict[str, Any]) -> dict[str, Any]:
    """RowHasher and the columnar hasher (shared.columnar_hash, as the extractor runs it: 50k-row
    chunks of the stored Arrow arrays) against raw hashlib.sha256 over the same canonical buffers."""
    import hashlib

    import pyarrow as pa

    from shared.columnar_hash import framed, hash_columns, row_texts
    from shared.extractor.source import connect, discover, stream_rows
    from shared.hashing import RowHasher, encode_row
    from shared.types import arrow_type, arrow_value_converter

    config = _ours_config(args)
    engine = connect(config.source)
    source = discover(engine, config.tables[0])
    columns = source.schema.columns
    converters = [arrow_value_converter(c.bq_type) for c in columns]
    rows = []
    for chunk in stream_rows(engine, source, 50_000):
        rows.extend(tuple(convert(v) for convert, v in zip(converters, row, strict=True)) for row in chunk)
        if len(rows) >= args["rows"]:
            break
    engine.dispose()
    rows = rows[: args["rows"]]
    positions = source.schema.key_positions
    hasher = RowHasher(positions)
    starts = range(0, len(rows), 50_000)
    types = [arrow_type(c.bq_type) for c in columns]
    chunks = [[pa.array(values, t) for values, t in zip(zip(*rows[i:i + 50_000]), types, strict=True)] for i in starts]
    buffers = [encode_row(row) for row in rows]
    for start, arrays in zip(starts, chunks, strict=True):
        columnar_rows = row_texts([framed(a) for a in arrays]).to_pylist()
        if [b.decode() for b in buffers[start:start + 50_000]] != columnar_rows:
            raise AssertionError("the columnar hasher's canonical buffers differ from encode_row's")
    total_bytes = sum(len(b) for b in buffers)
    best: dict[str, float] = {}

    def timed(name: str, work: Any) -> None:
        started = time.perf_counter()
        work()
        best[name] = min(best.get(name, 1e9), time.perf_counter() - started)

    sha = hashlib.sha256
    for _ in range(args.get("rounds", 3)):  # best of a few rounds: a micro-benchmark, noise only adds
        timed("rowhasher", lambda: [hasher(row) for row in rows])
        timed("encode", lambda: [encode_row(row) for row in rows])
        timed("columnar", lambda: [hash_columns(arrays, positions) for arrays in chunks])
        timed("sha256", lambda: [sha(buffer).hexdigest() for buffer in buffers])
    n = len(rows)
    return {
        "rows": n, "canonical_bytes": total_bytes, "bytes_per_row": total_bytes / n,
        "rowhasher_s": best["rowhasher"], "rowhasher_rows_per_s": n / best["rowhasher"],
        "rowhasher_bytes_per_s": total_bytes / best["rowhasher"],
        "columnar_s": best["columnar"], "columnar_rows_per_s": n / best["columnar"],
        "columnar_bytes_per_s": total_bytes / best["columnar"],
        "encode_s": best["encode"],
        "sha256_s": best["sha256"], "sha256_rows_per_s": n / best["sha256"],
        "sha256_bytes_per_s": total_bytes / best["sha256"],
        "ratio_rowhasher_vs_sha256": best["rowhasher"] / best["sha256"],
        "ratio_columnar_vs_sha256": best["columnar"] / best["sha256"],
        "peak_rss_mb": peak_rss_mb(),
    }


@command
def ours_compare(args: dict[str, Any]) -> dict[str, Any]:
    """`compare-keys --stored-hashes` (matrix_sync.compare.compare_table(stored_hashes=True)): the
    source streamed and hashed by the extractor's code against the segments of BigQuery's stored
    `_key_hash`/`_row_hash` (one GROUP BY while the source streams, no hash table), only differing
    segments fetched."""
    return _compare_keys(args, stored_hashes=True)


@command
def ours_compare_keys(args: dict[str, Any]) -> dict[str, Any]:
    """The operator's `compare-keys` (matrix_sync.compare.compare_table): the source streamed and
    hashed by the extractor's code, both hashes of every BigQuery row rebuilt from its data, segment
    fingerprints compared level by level, only differing segments fetched."""
    return _compare_keys(args, stored_hashes=False)


def _compare_keys(args: dict[str, Any], *, stored_hashes: bool) -> dict[str, Any]:
    from matrix_sync.compare import compare_table
    from shared.extractor.source import connect

    config = _ours_config(args)
    engine = connect(config.source)
    started = time.perf_counter()
    result = compare_table(config, engine, config.tables[0], stored_hashes=stored_hashes)
    seconds = time.perf_counter() - started
    engine.dispose()
    kinds: dict[str, int] = {}
    for difference in result.differences:
        kinds[difference.kind] = kinds.get(difference.kind, 0) + 1
    return {"seconds": seconds, "source_seconds": result.source_seconds, "rows": result.source_rows,
            "differing_keys": len({d.key_hash for d in result.differences}), "kinds": kinds, "deep": result.deep,
            "segments_compared": result.segments_compared, "peak_rss_mb": peak_rss_mb()}


# --- dlt -----------------------------------------------------------------------------------------

def _dlt_env(work: Path) -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DLT_DATA_DIR", str(work / "dlt-data"))
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")


def _dlt_source(args: dict[str, Any]):
    from dlt.sources.sql_database import sql_database

    source = sql_database(credentials=args["url"], table_names=[args["table"]], backend="pyarrow",
                          chunk_size=args.get("chunk_rows", 50_000))
    source.resources[args["table"]].apply_hints(primary_key="id")
    return source


def _dlt_package(info: Any, pipeline: Any, table: str) -> tuple[int, int]:
    """(rows normalized for the table, bytes of the load package's job files)."""
    rows = pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)
    size = 0
    for package in info.load_packages:
        for jobs in package.jobs.values():
            size += sum(job.file_size for job in jobs if job.job_file_info.table_name == table)
    return rows, size


@command
def dlt_extract(args: dict[str, Any]) -> dict[str, Any]:
    """dlt's sql_database source (pyarrow backend) into a local filesystem destination as Parquet."""
    work = Path(args["work"])
    _dlt_env(work)
    import dlt

    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    pipeline = dlt.pipeline(pipeline_name=args["name"], pipelines_dir=str(work / "dlt-pipelines"),
                            destination=dlt.destinations.filesystem(bucket_url=out.as_uri()), dataset_name="bench")
    source = _dlt_source(args)
    started = time.perf_counter()
    info = pipeline.run(source, write_disposition="replace", loader_file_format="parquet")
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    rows, _ = _dlt_package(info, pipeline, args["table"])
    written = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {"seconds": seconds, "rows": rows, "bytes": written, "rows_per_s": rows / seconds,
            "peak_rss_mb": peak_rss_mb()}


@command
def dlt_merge(args: dict[str, Any]) -> dict[str, Any]:
    """dlt's sql_database source merged into DuckDB on the primary key (the pipeline keeps its state
    between calls: the first call is the initial load, later ones are the change cycles)."""
    work = Path(args["work"])
    _dlt_env(work)
    import dlt

    pipeline = dlt.pipeline(pipeline_name=args["name"], pipelines_dir=str(work / "dlt-pipelines"),
                            destination=dlt.destinations.duckdb(str(args["duckdb"])), dataset_name="bench")
    source = _dlt_source(args)
    started = time.perf_counter()
    info = pipeline.run(source, write_disposition="merge", loader_file_format="parquet")
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    rows, size = _dlt_package(info, pipeline, args["table"])
    with pipeline.sql_client() as client:
        dest_rows = client.execute_sql(f"SELECT COUNT(*) FROM {args['table']}")[0][0]
    return {"seconds": seconds, "rows_written": rows, "bytes": size, "dest_rows": dest_rows,
            "peak_rss_mb": peak_rss_mb()}


# --- reladiff ------------------------------------------------------------------------------------

@command
def duckdb_copy(args: dict[str, Any]) -> dict[str, Any]:
    from bench import datagen

    started = time.perf_counter()
    datagen.generate_duckdb(Path(args["path"]), args["rows"], table=args.get("table"))
    return {"seconds": time.perf_counter() - started}


@command
def reladiff_diff(args: dict[str, Any]) -> dict[str, Any]:
    """reladiff's hashdiff of the PostgreSQL table against the DuckDB copy, every column compared."""
    from reladiff import connect_to_table, diff_tables
    from sqeleton.abcs.database_types import Date, Integer
    from sqeleton.databases.duckdb import Dialect as DuckDBDialect
    from sqeleton.databases.duckdb import Mixin_NormalizeValue as DuckDBNormalize

    from bench import datagen

    # Two fixes to reladiff 0.6's DuckDB dialect (sqeleton 0.1.7), without which it cannot compare
    # this table at all: it maps neither SMALLINT nor DATE (its PostgreSQL dialect does), and it
    # renders a NULL timestamp as a non-NULL text (DuckDB's CONCAT skips NULLs), a false difference.
    DuckDBDialect.TYPE_CLASSES.setdefault("SMALLINT", Integer)
    DuckDBDialect.TYPE_CLASSES.setdefault("DATE", Date)
    original = DuckDBNormalize.normalize_timestamp

    def normalize_timestamp(self: Any, value: str, coltype: Any) -> str:
        return f"CASE WHEN {value} IS NULL THEN NULL ELSE {original(self, value, coltype)} END"

    DuckDBNormalize.normalize_timestamp = normalize_timestamp

    columns = tuple(datagen.NAMES[1:])
    left = connect_to_table(args["pg_url"], args["pg_table"], "id", extra_columns=columns)
    right = connect_to_table(f"duckdb://{args['duckdb']}", args["table"], "id", extra_columns=columns)
    started = time.perf_counter()
    # skip_sort_results: its sort compares whole rows and fails on a NULL beside a text of the same key.
    differences = list(diff_tables(left, right, algorithm="hashdiff", threaded=True, skip_sort_results=True))
    seconds = time.perf_counter() - started
    keys = {row[0] for _, row in differences}
    return {"seconds": seconds, "differing_keys": len(keys), "diff_rows": len(differences),
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "{}"
    result = COMMANDS[name](json.loads(raw))
    result.setdefault("ru_maxrss_mb", ru_maxrss_mb())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
