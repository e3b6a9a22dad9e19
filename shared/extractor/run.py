"""Extracting a set of configured tables: what the on-prem agent, the extractor function and
`matrix-sync run` all do."""
from __future__ import annotations

from shared.config import Config
from shared.extractor.snapshot import ExtractResult, extract_table
from shared.extractor.source import connect, discover


class ExtractProgress:
    """Callbacks for progress display; the default shows nothing."""

    def table_started(self, table: str) -> None: ...
    def rows(self, table: str, count: int) -> None: ...
    def table_done(self, result: ExtractResult) -> None: ...


def extract_tables(config: Config, tables: list[str] | None = None, progress: ExtractProgress | None = None,
                   *, force_full: bool = False) -> list[ExtractResult]:
    """One snapshot per table, in config order; one source connection pool for all of them."""
    progress = progress or ExtractProgress()
    chosen = [config.table(name) for name in tables] if tables else config.tables
    engine = connect(config.source)
    results = []
    try:
        for table in chosen:
            progress.table_started(table.name)
            source = discover(engine, table)
            result = extract_table(config, engine, source, on_rows=lambda n, t=table.name: progress.rows(t, n),
                                   force_full=force_full)
            progress.table_done(result)
            results.append(result)
    finally:
        engine.dispose()
    return results
