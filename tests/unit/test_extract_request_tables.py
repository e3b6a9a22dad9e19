"""Which tables an extract request names, as Cloud Scheduler, a repair or a person sends it."""
from __future__ import annotations

import pytest

from shared.config import Config
from shared.events import EventError, Message
from shared.extractor.handler import requested_tables

CONFIG = Config.model_validate({
    "source": {"url": "sqlite:///x.db"},
    "tables": [{"name": "dbo.Customers", "key": ["id"]}, {"name": "dbo.Orders", "key": ["id"], "group": "nightly"},
               {"name": "dbo.Lines", "key": ["id"], "group": "nightly"}],
    "gcs": {"bucket": "b-1"}, "bigquery": {"project": "p-1", "dataset": "ds"}, "pubsub": {"project": "p-1"},
})


def _tables(data: dict[str, object]) -> list[str]:
    return requested_tables(CONFIG, Message(data, {}, "m1"))


def test_a_request_names_tables_a_table_a_group_or_everything() -> None:
    assert _tables({"tables": ["orders", "dbo.Customers", "ORDERS"]}) == ["dbo.Orders", "dbo.Customers"]
    assert _tables({"table": "lines"}) == ["dbo.Lines"]
    assert _tables({"group": "nightly"}) == ["dbo.Orders", "dbo.Lines"]  # was: every table of the config
    assert _tables({}) == ["dbo.Customers", "dbo.Orders", "dbo.Lines"]
    with pytest.raises(EventError, match="names no table"):
        _tables({"group": "hourly"})
