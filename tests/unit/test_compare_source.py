"""`compare-keys`' source side without a database: chunks prepared by the extractor's ChunkPreparer,
segment fingerprints in numpy, keys and hashes in a temporary Arrow file read back by prefix."""
from __future__ import annotations

import decimal
from pathlib import Path

from matrix_sync.compare import _counted
from matrix_sync.compare_source import CompareProgress, SourceKeys
from shared.extractor.prepare import ChunkPreparer
from shared.hashing import RowHasher, TableFingerprint
from shared.schema import Column, TableSchema

SCHEMA = TableSchema(columns=[
    Column(name="id", bq_name="id", source_type="int", bq_type="INT64", nullable=False),
    Column(name="code", bq_name="code", source_type="varchar(10)", bq_type="STRING", nullable=False),
    Column(name="amount", bq_name="amount", source_type="decimal(12,2)", bq_type="NUMERIC"),
], key=["id", "code"])


def _rows(start: int, count: int) -> list[tuple[object, ...]]:
    return [(i, f"MX-{i} ", decimal.Decimal(f"{i}.50")) for i in range(start, start + count)]


def test_source_keys_hold_every_row_and_give_back_the_ones_under_a_prefix(tmp_path: Path) -> None:
    prepare, hasher = ChunkPreparer(SCHEMA), RowHasher(SCHEMA.key_positions)
    keys = SourceKeys(tmp_path)
    for start in (0, 700):
        prepared, rejected = prepare(_rows(start, 700))
        assert not rejected
        keys.add(prepared)
    keys.finish()
    expected = {hasher(row): row for row in _rows(0, 1400)}
    assert keys.index.rows == 1400
    whole = TableFingerprint()
    for fingerprint in keys.index.level(1).values():
        whole.merge(fingerprint)
    reference = TableFingerprint()
    for _, row_hash in expected:
        reference.add(row_hash)
    assert whole == reference
    prefixes = sorted({kh[:2] for kh, _ in expected})[:3] + [next(iter(expected))[0][:4]]
    got = list(keys.rows_under(prefixes))
    wanted = {(kh, rh, (str(row[0]), row[1])) for (kh, rh), row in expected.items()
              if any(kh.startswith(p) for p in prefixes)}
    assert len(got) == len(wanted) and set(got) == wanted
    assert list(keys.rows_under([])) == []
    keys.close()


def test_an_empty_source_has_no_rows_under_any_prefix(tmp_path: Path) -> None:
    keys = SourceKeys(tmp_path)
    keys.finish()
    assert keys.index.rows == 0 and keys.index.level(1) == {}
    assert list(keys.rows_under(["a"])) == []


def test_rows_read_for_the_differing_segments_show_their_count_as_they_go() -> None:
    class Phases(CompareProgress):
        def __init__(self) -> None:
            self.shown: list[str] = []

        def phase(self, text: str) -> None:
            self.shown.append(text)

    progress = Phases()
    assert sum(_counted(iter(range(120_001)), progress, "BigQuery rows read", every=50_000)) == sum(range(120_001))
    assert progress.shown == ["BigQuery rows read: 50,000", "BigQuery rows read: 100,000", "BigQuery rows read: 120,001"]
