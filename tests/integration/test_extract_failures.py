"""An extraction that dies part-way leaves parts but no manifest (so nothing is loaded), and the
next run starts clean."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix_sync import sample
from matrix_sync.stack import LocalStack
from shared.clients import storage_client
from shared.extractor import snapshot
from shared.extractor.source import connect, discover
from shared.topology import MANIFEST_NAME
from tests.support import write_config

pytestmark = pytest.mark.stack


def test_source_lost_mid_stream_leaves_no_manifest_and_rerun_succeeds(
    stack: LocalStack, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny")
    config = write_config(tmp_path / "c.yaml", url=f"sqlite:///{database}", tables={"deliveries": ["subscription_id", "delivery_date"]},
                          suffix=unique_name, chunk_rows=50)
    stack.ensure_resources(bucket=config.gcs.bucket, bigquery_project=config.bigquery.project,
                           dataset=config.bigquery.dataset, pubsub_project=config.pubsub.project)
    engine = connect(config.source)
    source = discover(engine, config.tables[0])
    real_stream = snapshot.stream_rows

    def dying_stream(*args: object, **kwargs: object) -> Iterator[list[tuple]]:
        for number, chunk in enumerate(real_stream(*args, **kwargs)):
            if number == 2:
                raise ConnectionResetError("source went away")
            yield chunk

    monkeypatch.setattr(snapshot, "stream_rows", dying_stream)
    with pytest.raises(ConnectionResetError):
        snapshot.extract_table(config, engine, source)
    names = [b.name for b in storage_client().list_blobs(config.gcs.bucket)]
    assert any(name.endswith(".parquet") for name in names)
    assert not any(name.endswith(MANIFEST_NAME) for name in names)

    monkeypatch.setattr(snapshot, "stream_rows", real_stream)
    result = snapshot.extract_table(config, engine, source)
    engine.dispose()
    manifests = [b.name for b in storage_client().list_blobs(config.gcs.bucket) if b.name.endswith(MANIFEST_NAME)]
    assert manifests == [result.manifest_uri.split("/", 3)[3]]
    assert result.rows > 100 and result.mode == "full"
