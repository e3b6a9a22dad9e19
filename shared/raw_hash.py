"""A 64-bit hash of each row's values as the source reader returned them, before any conversion.

The key index keeps it beside the row hash, so that the next delta can tell a row unchanged without
converting, checking and hashing it again: equal raw hashes under the same tag (`tag()`) mean equal source
values (a miss, two different rows hashing alike, has a chance of about 2^-64 a changed row; the
periodic full snapshot and `compare-keys` would still catch one). Anything else (another DuckDB,
another hash encoding, a type DuckDB cannot hash) just means the row is prepared as before.

A raw hash says the source value is unchanged, not that today's code would convert or quarantine it
as the code that wrote the base did: SQLite's BOOLEAN 2 landed as TRUE before a release quarantined
it, and a kept base row stayed TRUE in BigQuery with every check passing. So the tag (`tag()`) also names the
code and the libraries that turn raw values into loaded ones: after an upgrade the first delta
prepares every row again (as without raw hashes) and ships whatever the new rules change.

DuckDB's `hash()` runs vectorized over the Arrow buffers. It treats -0.0 as 0.0, as SQL equality
does, so floats are hashed by their bit patterns instead.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pyarrow as pa

from shared import module_files
from shared.hashing import ENCODING_VERSION
from shared.schema import RAW_HASH_COLUMN as RAW_HASH_COLUMN  # re-exported beside the hash it names

if TYPE_CHECKING:
    import duckdb

# read, convert, check or hash values on the way from the source to a row of the snapshot
CONVERTING_LIBRARIES = ("pyarrow", "pydantic", "SQLAlchemy", "adbc-driver-sqlite", "adbc-driver-postgresql",
                        "psycopg2-binary", "PyMySQL", "pymssql", "numpy", "datafusion")
PACKAGE = Path(__file__).resolve().parent
EXTRACTION = "extractor/run.py"  # what the agent, the CLI and the extractor function run


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def code_digest(package: Path = PACKAGE, entry: str = EXTRACTION,
                libraries: Sequence[str] = CONVERTING_LIBRARIES) -> str:
    """12 hex digits naming the sources of the package's modules that `entry` reaches and the
    libraries' versions: another release of either may read, convert or quarantine a value
    differently. The same in a full install and in the extractor function's archive (which ships
    exactly those modules), and untouched by a release that changes only the loader or the checks."""
    digest = hashlib.sha256()
    for path in sorted(module_files.reachable_files(package / entry, package.parent, (package.name,))):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for library in libraries:
        digest.update(f"{library}={_version(library)}\0".encode())
    return digest.hexdigest()[:12]


@functools.cache
def tag() -> str:
    """How `_raw_hash` is computed, as manifests record it (`index_raw_hash`); equal tags, comparable hashes."""
    return (f"duckdb-{importlib.metadata.version('duckdb')}/hash-of-raw-values-1/encoding-{ENCODING_VERSION}"
            f"/code-{code_digest()}")


_local = threading.local()


def _connection(duckdb_module: ModuleType) -> duckdb.DuckDBPyConnection:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = duckdb_module.connect(config={"threads": 1})
        _local.connection = connection
    return connection


def _hashable(array: pa.Array) -> pa.Array:
    if isinstance(array.type, pa.BaseExtensionType):
        array = array.storage
    if pa.types.is_float64(array.type):
        return array.view(pa.int64())
    if pa.types.is_float32(array.type):
        return array.view(pa.int32())
    if pa.types.is_float16(array.type):
        return array.view(pa.int16())
    return array


def raw_hashes(columns: Sequence[pa.Array]) -> pa.Array | None:
    """int64 (the hash's bits) for each row of these columns, or None where they cannot be hashed."""
    import duckdb  # on first use, not at import: the functions that only name the column never load it

    if not columns:
        return None
    names = [f"c{i}" for i in range(len(columns))]
    try:
        values = pa.Table.from_arrays([_hashable(column) for column in columns], names=names)
        relation = _connection(duckdb).from_arrow(values).project(f"hash({', '.join(names)}) AS h")
        hashes = relation.to_arrow_table().column(0).combine_chunks().view(pa.int64())
    except (duckdb.Error, pa.ArrowException, TypeError, ValueError):
        return None
    return hashes if len(hashes) == len(columns[0]) and not hashes.null_count else None
