"""Quarantine files: one JSON line per row a snapshot leaves out, next to its parts
(`quarantine-<n>.jsonl`), listed in the manifest's `quarantine.uris`.

Each line (format 2) is

    {"format": 2, "key": {"<key column>": "<repr>", ...}, "reason": "<Exception>: <why>", "row": [<value>, ...]}

`key` holds each key column's value as Python's repr (as the logs show it); `row` every value of the
row in column order, compact and lossless:

- NULL: `null`; text: the JSON string itself (an unpaired surrogate, as invalid UTF-8 is read, as a
  `\\udcxx` escape);
- bytes: `{"type": "bytes", "base64": "..."}`;
- any other value: `{"type": "<Python type>", "repr": "..."}` (`Decimal('1E+400')`, a date, ...).

A value larger than `VALUE_LIMIT` (1 MiB: of UTF-8 for text, of data for bytes, of its repr for
others; a key value too) is not written whole but described:
`{"type": ..., "truncated": true, "length": <bytes>, "sha256": "<hex>", "head": "<first 1024
characters>"}` (bytes: `"head_base64"`, the first 1024 bytes), so one hostile cell costs about 1 KiB in
the bucket, not four times its size. Lines before format 2 have no `format` and hold every value of
`row` as its Python repr; `decoded` reads both.
"""
from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from shared import gcs

FORMAT = 2
VALUE_LIMIT = 1024 * 1024
HEAD = 1024
REASON_LIMIT = 4000  # characters of a reason kept (a converter's message can quote a value)
CONTENT_TYPE = "application/x-ndjson"
_SLICE = 1024 * 1024
_SPOOL_BYTES = 8 * 1024 * 1024  # a file larger than this is spooled to disk, not held in memory


def entry(names: Sequence[str], key: Sequence[str], row: Sequence[object], error: BaseException) -> dict[str, object]:
    """The line of a quarantined row: its key, the reason and its values, each bounded by VALUE_LIMIT."""
    keys = {k: _key_value(row[names.index(k)]) for k in key if names.index(k) < len(row)}
    reason = f"{type(error).__name__}: {error}"
    if len(reason) > REASON_LIMIT:
        reason = f"{reason[:REASON_LIMIT]}... ({len(reason):,} characters)"
    return {"format": FORMAT, "key": keys, "reason": reason, "row": [encoded(value) for value in row]}


def encoded(value: object) -> object:
    """One value as a quarantine line holds it (see the module's docstring)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if not _text_over_limit(value) else _described_text(value, "str")
    if isinstance(value, bytes | bytearray | memoryview):
        data = memoryview(value).cast("B")
        if len(data) > VALUE_LIMIT:
            return {"type": "bytes", "truncated": True, "length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                    "head_base64": base64.b64encode(data[:HEAD]).decode("ascii")}
        return {"type": "bytes", "base64": base64.b64encode(data).decode("ascii")}
    text = repr(value)
    if _text_over_limit(text):
        return _described_text(text, type(value).__name__)
    return {"type": type(value).__name__, "repr": text}


def decoded(value: object, *, format_version: int | None = FORMAT) -> object:
    """A `row` value read back: text as str, bytes as bytes, NULL as None; any other value as its
    repr, and a value too large to be written whole as its description (a dict). `format_version`
    None reads a line written before format 2 (every value a repr)."""
    if format_version is None or value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and not value.get("truncated"):
        if value.get("type") == "bytes" and "base64" in value:
            return base64.b64decode(value["base64"])
        if "repr" in value:
            return value["repr"]
    return value


def reasons_counted(entries: Sequence[dict[str, object]], shown: int = 3) -> str:
    """The reasons of a batch of quarantined rows, most common first, with their counts:
    `A (4 rows); B (1 row); and 2 other reasons`. One reason alone is just that reason."""
    counts = Counter(str(e.get("reason", "")) for e in entries)
    if len(counts) == 1:
        return _short(next(iter(counts)))
    parts = [f"{_short(reason)} ({n} row{'s' if n != 1 else ''})" for reason, n in counts.most_common(shown)]
    others = len(counts) - shown
    if others > 0:
        parts.append(f"and {others} other reason{'s' if others != 1 else ''}")
    return "; ".join(parts)


def upload(bucket: str, name: str, entries: Iterable[dict[str, object]]) -> gcs.ObjectInfo:
    """Writes the lines one at a time to a spooled file (on disk once it passes 8 MiB) and uploads
    that, with its MD5 for GCS to check: the whole file is never built in memory."""
    md5 = hashlib.md5()
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as body:
        for item in entries:
            text = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            line = text.encode("utf-8", "backslashreplace") + b"\n"
            # writelines, not write: tests/infra/iam_calls follows names, and shared.results.write needs BigQuery
            body.writelines((line,))
            md5.update(line)
            size += len(line)
        body.seek(0)
        return gcs.upload_file(bucket, name, body, size, base64.b64encode(md5.digest()).decode(), CONTENT_TYPE)


def read_lines(data: bytes) -> list[dict[str, Any]]:
    """The entries of a quarantine file's bytes (either format)."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _short(reason: str, limit: int = 300) -> str:
    return reason if len(reason) <= limit else f"{reason[:limit]}..."


def _key_value(value: object) -> object:
    """A key value as its repr (as today's readers and the logs have it), unless it is too large."""
    if isinstance(value, str | bytes | bytearray | memoryview) and (
            len(value) > VALUE_LIMIT or (isinstance(value, str) and _text_over_limit(value))):
        return encoded(value)
    text = repr(value)
    return text if not _text_over_limit(text) else _described_text(text, type(value).__name__)


def _text_over_limit(text: str) -> bool:
    if len(text) > VALUE_LIMIT:
        return True
    if len(text) <= VALUE_LIMIT // 4:
        return False
    return _utf8_length(text) > VALUE_LIMIT


def _utf8_length(text: str) -> int:
    return sum(len(text[i:i + _SLICE].encode("utf-8", "surrogatepass")) for i in range(0, len(text), _SLICE))


def _described_text(text: str, type_name: str) -> dict[str, object]:
    """Length and SHA-256 of the text's UTF-8 (an unpaired surrogate encoded as is), hashed a slice at a
    time so a 100 MB value is never copied whole, and its first HEAD characters."""
    digest, length = hashlib.sha256(), 0
    for i in range(0, len(text), _SLICE):
        data = text[i:i + _SLICE].encode("utf-8", "surrogatepass")
        digest.update(data)
        length += len(data)
    return {"type": type_name, "truncated": True, "length": length, "sha256": digest.hexdigest(), "head": text[:HEAD]}
