"""Quarantine files hold each bad row compactly and losslessly (bytes as base64, text as JSON text),
a value over 1 MiB as its type, length, SHA-256 and head (a 110 MB bytea was written as a 440 MB
Python repr), and the warning counts each reason (it showed the first row's reason for all)."""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import logging
from types import SimpleNamespace

import pytest

from shared import gcs
from shared.extractor import quarantine
from shared.extractor.prepare import ChunkPreparer
from shared.extractor.snapshot import SnapshotWriter
from shared.schema import Column, TableSchema

SCHEMA = TableSchema(columns=[Column(name="id", bq_name="id", source_type="int", bq_type="INT64"),
                              Column(name="t", bq_name="t", source_type="text", bq_type="STRING"),
                              Column(name="b", bq_name="b", source_type="bytea", bq_type="BYTES"),
                              Column(name="n", bq_name="n", source_type="numeric", bq_type="NUMERIC")], key=["id"])


def _entry(row: tuple, error: Exception | None = None) -> dict[str, object]:
    return ChunkPreparer(SCHEMA).quarantine_entry(row, error or ValueError("bad"))


def _line(entry: dict[str, object]) -> bytes:
    return json.dumps(entry, ensure_ascii=False).encode("utf-8", "backslashreplace")


def test_values_are_written_losslessly_and_read_back() -> None:
    row = (7, "Grüße \udcff 'quoted'", b"\x00\xff" * 3, decimal.Decimal("1E+400"))
    entry = json.loads(_line(_entry(row)))

    assert entry["format"] == 2 and entry["key"] == {"id": "7"} and entry["reason"] == "ValueError: bad"
    assert entry["row"][1] == "Grüße \udcff 'quoted'"  # text as JSON text, a lone surrogate as an escape
    assert entry["row"][2] == {"type": "bytes", "base64": base64.b64encode(b"\x00\xff" * 3).decode()}
    assert entry["row"][3] == {"type": "Decimal", "repr": "Decimal('1E+400')"}
    assert [quarantine.decoded(v) for v in entry["row"]] == ["7", row[1], row[2], "Decimal('1E+400')"]
    assert quarantine.decoded(None) is None and quarantine.decoded("'x'", format_version=None) == "'x'"


def test_a_value_over_the_limit_is_described_not_written_whole() -> None:
    blob = bytes(range(256)) * 40_000  # 10.24 MB: as a repr, about four times that
    text = "é" * 3_000_000  # 6 MB of UTF-8
    line = _line(_entry((5001, text, blob, dt.date(2024, 1, 1)),
                        ValueError("cannot convert a bytes to BYTES: over 10485760 bytes (the per-cell limit)")))

    assert len(line) < 8_000, len(line)
    entry = json.loads(line)
    assert entry["key"] == {"id": "5001"} and "over 10485760 bytes" in entry["reason"]
    assert entry["row"][1] == {"type": "str", "truncated": True, "length": 6_000_000,
                               "sha256": hashlib.sha256(text.encode()).hexdigest(), "head": "é" * quarantine.HEAD}
    assert entry["row"][2] == {"type": "bytes", "truncated": True, "length": len(blob),
                               "sha256": hashlib.sha256(blob).hexdigest(),
                               "head_base64": base64.b64encode(blob[:quarantine.HEAD]).decode()}
    assert entry["row"][3] == {"type": "date", "repr": "datetime.date(2024, 1, 1)"}


def test_values_at_the_limit_are_kept_whole_and_a_huge_key_is_described() -> None:
    at_limit = "x" * quarantine.VALUE_LIMIT
    assert quarantine.encoded(at_limit) == at_limit
    assert quarantine.encoded(at_limit + "y")["truncated"] is True  # type: ignore[index]
    four_byte = "\U0001F600" * (quarantine.VALUE_LIMIT // 4 + 1)  # few characters, over the limit in UTF-8
    assert quarantine.encoded(four_byte)["length"] == 4 * len(four_byte)  # type: ignore[index]
    schema = TableSchema(columns=[Column(name="k", bq_name="k", source_type="text", bq_type="STRING")], key=["k"])
    key = ChunkPreparer(schema).quarantine_entry(("k" * 2_000_000,), ValueError("x"))["key"]
    assert key["k"]["length"] == 2_000_000  # type: ignore[index]


class _Blob:
    def __init__(self, store: dict[str, bytes], name: str) -> None:
        self.store, self.name, self.md5_hash = store, name, None

    def upload_from_file(self, body, size, **kwargs) -> None:  # type: ignore[no-untyped-def]
        data = body.read()
        assert len(data) == size
        self.store[self.name] = data
        self.md5_hash = base64.b64encode(hashlib.md5(data).digest()).decode()  # as GCS computes it


class _Client:
    def __init__(self) -> None:
        self.store: dict[str, bytes] = {}

    def bucket(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(blob=lambda object_name: _Blob(self.store, f"{name}/{object_name}"))


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    client = _Client()
    monkeypatch.setattr(gcs, "storage_client", lambda: client)
    return client.store


def test_the_file_is_written_a_line_at_a_time_and_read_back(bucket: dict[str, bytes]) -> None:
    rows = [(i, "t" * 10, b"\x01" * (2_000_000 if i % 2 else 10), None) for i in range(6)]

    def entries():  # a generator: the writer never needs the list
        for row in rows:
            yield _entry(row)

    stored = quarantine.upload("b", "s/quarantine-00000.jsonl", entries())

    data = bucket["b/s/quarantine-00000.jsonl"]
    assert stored.uri == "gs://b/s/quarantine-00000.jsonl" and stored.size == len(data) < 20_000
    lines = quarantine.read_lines(data)
    assert [line["key"] for line in lines] == [{"id": repr(i)} for i in range(6)]
    assert quarantine.decoded(lines[0]["row"][2]) == b"\x01" * 10 and lines[1]["row"][2]["length"] == 2_000_000


def test_the_warning_counts_each_reason(bucket: dict[str, bytes], caplog: pytest.LogCaptureFixture) -> None:
    reasons = ["ValueError: cannot convert a str to STRING: over 10485760 bytes"] * 4 + [
        "ValueError: cannot convert a bytes to BYTES: over 10485760 bytes"] + [f"ValueError: odd {i}" for i in range(4)]
    rejected = [_entry((i, None, None, None), ValueError(r.removeprefix("ValueError: "))) for i, r in
                enumerate(reasons[:5])]
    writer = SimpleNamespace(folder="s/huge/run", name_prefix="", quarantine_uris=[], quarantined=0,
                             config=SimpleNamespace(gcs=SimpleNamespace(bucket="b")),
                             source=SimpleNamespace(config=SimpleNamespace(name="wide.huge")))

    with caplog.at_level(logging.WARNING):
        SnapshotWriter._upload_quarantine(writer, rejected)  # type: ignore[arg-type]
        SnapshotWriter._upload_quarantine(writer, [  # type: ignore[arg-type]
            _entry((i, None, None, None), ValueError(r.removeprefix("ValueError: "))) for i, r in enumerate(reasons)])

    first, second = (r.getMessage() for r in caplog.records if r.name == "shared.extractor.snapshot")
    assert first == ("quarantined 5 row(s) of wide.huge: ValueError: cannot convert a str to STRING: over 10485760 "
                     "bytes (4 rows); ValueError: cannot convert a bytes to BYTES: over 10485760 bytes (1 row)")
    assert second.startswith("quarantined 9 row(s) of wide.huge: ValueError: cannot convert a str")
    assert second.endswith("; ValueError: odd 0 (1 row); and 3 other reasons")
    assert writer.quarantined == 14 and len(writer.quarantine_uris) == 2


def test_one_reason_alone_reads_as_before() -> None:
    assert quarantine.reasons_counted([{"reason": "ValueError: x"}] * 3) == "ValueError: x"
