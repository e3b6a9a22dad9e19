"""Fixtures shared by the suite: one local stack per test session, on free ports, torn down after."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix_sync.stack import LocalStack, StackPorts
from shared.clients import reset_clients


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real emulators and function servers; os.environ points the google-cloud clients at them."""
    local = LocalStack(root=tmp_path_factory.mktemp("stack"), ports=StackPorts.free(), project="local-test")
    local.install()
    saved = dict(os.environ)
    try:
        local.up()
        os.environ.update(local.env())
        reset_clients()
        yield local
    finally:
        local.down()
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


@pytest.fixture
def unique_name() -> str:
    """A suffix that keeps buckets, datasets and projects of different tests apart on one stack."""
    return uuid.uuid4().hex[:8]


def log_text(stack: LocalStack, service: str) -> str:
    path: Path = stack.log_path(service)
    return path.read_text(errors="replace") if path.exists() else ""
