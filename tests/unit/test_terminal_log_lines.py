"""On the command line (a log file given) every line goes to the file as JSON; warnings and errors also
reach stderr, one line a person reads, with no stack trace, and errors a command tells itself
(`logs.told_by_command`) not at all."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import logs

log = logs.get("matrix_sync.test")


@pytest.fixture
def stderr(tmp_path: Path) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure(stream=stream, log_file=tmp_path / "log.jsonl")
    yield stream
    logs.configure()


def _failure() -> ValueError:
    try:
        raise ValueError("no such column")
    except ValueError as error:
        return error


def test_a_warning_with_a_trace_is_one_line_on_stderr_and_whole_in_the_file(stderr: io.StringIO,
                                                                           tmp_path: Path) -> None:
    logs.event(log, "renewing the lock failed, trying again", logging.WARNING, exc_info=_failure())
    log.info("only in the file")

    assert stderr.getvalue() == (f"warning: renewing the lock failed, trying again (more in {tmp_path / 'log.jsonl'})"
                                 "\n")
    written = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["severity"] for line in written] == ["WARNING", "INFO"]
    assert "ValueError: no such column" in written[0]["stack_trace"]


def test_an_error_the_command_tells_itself_goes_to_the_file_only(stderr: io.StringIO, tmp_path: Path) -> None:
    with logs.told_by_command():
        logs.event(log, "extraction of accounts: not extracted", logging.ERROR, exc_info=_failure())
        log.warning("quarantined 2 row(s) of accounts")
    log.error("could not publish alert")

    assert stderr.getvalue().splitlines() == ["warning: quarantined 2 row(s) of accounts",
                                              "error: could not publish alert"]
    written = [json.loads(line)["message"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert written == ["extraction of accounts: not extracted", "quarantined 2 row(s) of accounts",
                       "could not publish alert"]
