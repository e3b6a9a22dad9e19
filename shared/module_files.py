"""Which of the project's own source files a module reaches through its imports, read from the
source text (nothing is imported): what a function's archive must ship (matrix_sync.package), and
what the extractor's code is made of (shared.raw_hash)."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path


def reachable_files(entry: Path, root: Path, packages: tuple[str, ...]) -> set[Path]:
    """`entry` and the files of every module of `packages` (under `root`) its imports reach, transitively."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imports_of(path):
            if module.split(".")[0] in packages:
                pending.extend(module_files(module, root))
    return seen


def imports_of(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from google.cloud import bigquery` imports google.cloud.bigquery when that is a module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def module_files(module: str, root: Path) -> list[Path]:
    """The files executed by importing `module` (and each package on the way), if they exist."""
    parts = module.split(".")
    files = []
    for end in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:end])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files
