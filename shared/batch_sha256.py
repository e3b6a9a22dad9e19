"""SHA-256 of every value of Arrow arrays, a whole array per call.

`hashlib` costs about 1.7 µs a call whatever the length, and holds the GIL for inputs under 2 KiB:
for a million short row texts that is about 1.7 CPU-s, during which no other thread of the
extractor runs Python. Apache DataFusion's `sha256` runs over the Arrow buffers in Rust (the
`sha2` crate, SHA-NI where the CPU has it) with the GIL released: about 0.35 CPU-s for a million
250-byte rows. Where DataFusion cannot be imported, or refuses an array, `hashlib` hashes value by
value; both give the same digests (tests/unit/test_batch_sha256.py).
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from shared import logs

log = logs.get(__name__)
DIGEST_BYTES = 32
_INPUT = "matrix_sync_sha256_input"
_local = threading.local()
_warned = threading.Event()


def digests(arrays: Sequence[pa.Array]) -> list[np.ndarray]:
    """For each array (string or binary, without NULLs), a (len, 32) uint8 array of the SHA-256
    digests of its values' bytes."""
    if not arrays:
        return []
    hashed = _datafusion_digests(arrays)
    return hashed if hashed is not None else [hashlib_digests(array) for array in arrays]


def hashlib_digests(array: pa.Array) -> np.ndarray:
    """The reference: `hashlib.sha256` over each value's bytes, no Python str per value."""
    array = array.cast(pa.large_binary())
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], np.int64, n + 1, array.offset * 8).tolist()
    data = memoryview(array.buffers()[2] or b"")
    sha256 = hashlib.sha256
    joined = b"".join([sha256(data[a:b]).digest() for a, b in zip(offsets, offsets[1:])])
    return np.frombuffer(joined, np.uint8).reshape(n, DIGEST_BYTES)


def _datafusion_digests(arrays: Sequence[pa.Array]) -> list[np.ndarray] | None:
    datafusion = _datafusion()
    if datafusion is None:
        return None
    names = [f"c{i}" for i in range(len(arrays))]
    context = _context(datafusion)
    try:
        frame = context.from_arrow(pa.Table.from_arrays(list(arrays), names=names), name=_INPUT)
        functions, column = datafusion.functions, datafusion.col
        result = frame.select(*(functions.sha256(column(name)).alias(name) for name in names)).to_arrow_table()
    except Exception as error:  # noqa: BLE001 - DataFusion's own error types; hashlib has the last word
        _fell_back(error)
        return None
    finally:
        # from_arrow registers the table in the session: left there, the session would keep every
        # array it ever hashed, and (after a failure) refuse the name on this thread's next call
        context.deregister_table(_INPUT)
    out = [_fixed_width(result.column(name).combine_chunks()) for name in names]
    return out if all(d is not None and len(d) == len(a) for d, a in zip(out, arrays, strict=True)) else None


def _fixed_width(array: pa.Array) -> np.ndarray | None:
    """A binary array of 32-byte values as a (len, 32) matrix over its data buffer."""
    if array.null_count or not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        return None
    width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], width, n + 1, array.offset * np.dtype(width).itemsize)
    if n and not np.all(np.diff(offsets) == DIGEST_BYTES):
        return None
    start = int(offsets[0]) if n else 0
    data = np.frombuffer(array.buffers()[2] or b"", np.uint8)
    return data[start:start + n * DIGEST_BYTES].reshape(n, DIGEST_BYTES)


def _fell_back(error: Exception) -> None:
    """Said once a process: hashing value by value is correct, only about 5x slower."""
    if not _warned.is_set():
        _warned.set()
        log.warning("DataFusion refused a batch of SHA-256 inputs (%s: %s); hashing value by value",
                    type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")


def _datafusion() -> ModuleType | None:
    try:
        import datafusion
        import datafusion.functions  # noqa: F401 - the submodule `functions` names
    except ImportError:
        return None
    return datafusion


def _context(datafusion: ModuleType) -> Any:
    """One single-partition session a thread: the extractor's threads are the parallelism."""
    context = getattr(_local, "context", None)
    if context is None:
        context = datafusion.SessionContext(datafusion.SessionConfig().with_target_partitions(1))
        _local.context = context
    return context
