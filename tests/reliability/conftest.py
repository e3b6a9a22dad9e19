"""One local stack for the reliability tests, apart from the session's: its services get killed."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from matrix_sync.stack import LocalStack, StackPorts
from shared.clients import reset_clients
from tests.reliability.harness import FaultStack


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    local = LocalStack(root=tmp_path_factory.mktemp("fault-stack"), ports=StackPorts.free(), project="fault-test")
    control = tmp_path_factory.mktemp("fault-control")
    saved = dict(os.environ)
    local.install()
    try:
        local.up()
        faults = FaultStack(local, control)
        faults.restart("loader")  # with the hook that can hold it at a point of its work
        os.environ.update(local.env())
        reset_clients()
        yield faults
    finally:
        local.down()
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()
