"""Deployed, a missing dataset is an error naming the fix: the functions hold no role that creates datasets."""
from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from shared import bigquery as bq


class _NoDatasets:
    def get_dataset(self, dataset_id: str) -> None:
        raise gexc.NotFound(f"Not found: Dataset {dataset_id}")

    def create_dataset(self, *_args: object, **_kwargs: object) -> None:
        raise AssertionError("a deployed function must not create datasets")


def test_a_missing_dataset_outside_the_emulators_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BIGQUERY_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(bq, "client", lambda _project: _NoDatasets())
    with pytest.raises(bq.MissingDatasetError, match=r"dataset p\.d_staging does not exist: deploy infra/"):
        bq.ensure_dataset("p", "d_staging")
