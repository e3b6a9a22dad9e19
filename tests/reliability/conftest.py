"""One local stack for the reliability tests, apart from the session's: its services get killed."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from matrix_sync.stack import LocalStack
from tests.conftest import running_stack
from tests.reliability.harness import FaultStack


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    control = tmp_path_factory.mktemp("fault-control")
    made: list[FaultStack] = []

    def hold_loader(local: LocalStack) -> None:
        made.append(FaultStack(local, control))
        made[0].restart("loader")  # with the hook that can hold it at a point of its work

    with running_stack(tmp_path_factory.mktemp("fault-stack"), "fault-test", hold_loader):
        yield made[0]
