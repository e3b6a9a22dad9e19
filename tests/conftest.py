"""Fixtures shared by the suite: one local stack per test session, on free ports, torn down after."""
from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from matrix_sync.stack import LocalStack, StackPorts
from shared import logs
from shared.clients import reset_clients


@contextmanager
def running_stack(root: Path, project: str,
                  before_env: Callable[[LocalStack], None] = lambda _stack: None) -> Iterator[LocalStack]:
    """The real emulators and function servers on free ports; while inside, os.environ points the
    google-cloud clients at them. `before_env` runs once the stack is up."""
    local = LocalStack(root=root, ports=StackPorts.free(), project=project)
    local.install()
    saved = dict(os.environ)
    try:
        local.up()
        before_env(local)
        os.environ.update(local.env())
        reset_clients()
        yield local
    finally:
        local.down()
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("stack"), "local-test") as local:
        yield local


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Every log line written during the test, as the JSON the functions write (then the default again)."""
    stream = io.StringIO()
    logs.configure(stream=stream)
    yield stream
    logs.configure()


@pytest.fixture
def unique_name() -> str:
    """A suffix that keeps buckets, datasets and projects of different tests apart on one stack."""
    return uuid.uuid4().hex[:8]


def log_text(stack: LocalStack, service: str) -> str:
    path: Path = stack.log_path(service)
    return path.read_text(errors="replace") if path.exists() else ""
