"""A section written with nothing under it (`source:` alone, which YAML reads as null) is a section
not given: the environment's MATRIX_<SECTION>__<FIELD> fills it, defaults apply, and a required one
left empty is named as missing."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_config
from tests.unit.test_config import write

WITHOUT_SOURCE = """
tables:
  - name: customers
    key: [customer_id]
gcs: {bucket: matrix-snapshots}
bigquery: {project: acme-dwh, dataset: matrix}
pubsub: {project: acme-dwh}
"""


def test_an_empty_source_section_takes_the_url_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n" + WITHOUT_SOURCE)
    url = "postgresql+psycopg2://etl@db.internal:5432/matrix"

    config = load_config(path, environ={"MATRIX_SOURCE__URL": url})

    assert config.source.url == url


def test_an_empty_optional_section_keeps_its_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "source: {url: 'sqlite:///matrix.db'}\nextract:\nrun:\n" + WITHOUT_SOURCE)

    config = load_config(path, environ={"MATRIX_EXTRACT__CHUNK_ROWS": "1000"})

    assert (config.extract.chunk_rows, config.extract.mode, config.run.wait_timeout_s) == (1000, "delta", 600)


def test_an_empty_required_section_without_an_override_is_named_as_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "source:\n" + WITHOUT_SOURCE)

    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})

    assert str(error.value) == f"{path}: source: Field required"
