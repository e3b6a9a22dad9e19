"""Structured JSON logs in Cloud Logging's format, with run id, table and event id as labels."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from shared.secrets import redact

_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_labels", default={})
_told_by_command: contextvars.ContextVar[bool] = contextvars.ContextVar("told_by_command", default=False)
_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL", "INFO": "INFO", "DEBUG": "DEBUG"}


@contextlib.contextmanager
def labels(**values: object) -> Iterator[None]:
    """Adds labels (run_id=..., table=...) to every log line written inside the block."""
    merged = {**_labels.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _labels.set(merged)
    try:
        yield
    finally:
        _labels.reset(token)


@contextlib.contextmanager
def told_by_command() -> Iterator[None]:
    """For a command that prints each failure of the block itself, a line each: the errors logged
    inside go to the log file only, not to stderr a second time (warnings still go to both)."""
    token = _told_by_command.set(True)
    try:
        yield
    finally:
        _told_by_command.reset(token)


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": redact(record.getMessage()),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logging.googleapis.com/labels": {"component": record.name, **_labels.get()},
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname, "line": record.lineno, "function": record.funcName,
            },
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["stack_trace"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TerminalFormatter(logging.Formatter):
    """A log line as a person at the terminal reads it: `warning: what happened`, one line; the stack
    trace, labels and fields stay in the log file."""

    def __init__(self, log_file: Path) -> None:
        super().__init__()
        self._log_file = log_file

    def format(self, record: logging.LogRecord) -> str:
        lines = redact(record.getMessage()).strip().splitlines() or [""]
        text = f"{record.levelname.lower()}: {lines[0]}"
        if record.exc_info or len(lines) > 1:
            text += f" (more in {self._log_file})"
        return text


def configure(stream: object = None, log_file: Path | None = None, level: str | None = None) -> None:
    """JSON lines to stderr (functions: Cloud Logging reads them); with a log file (the command line),
    JSON lines to the file, and warnings and errors also to stderr as lines a person reads
    (`TerminalFormatter`), but for the errors a command tells itself (`told_by_command`)."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level or os.environ.get("MATRIX_LOG_LEVEL", "INFO"))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(CloudLoggingFormatter())
        root.addHandler(to_file)
        root.addHandler(_terminal_handler(stream, log_file))
    else:
        to_stderr = logging.StreamHandler(stream or sys.stderr)
        to_stderr.setFormatter(CloudLoggingFormatter())
        root.addHandler(to_stderr)
    for noisy in ("urllib3", "google", "grpc", "werkzeug", "gunicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _terminal_handler(stream: object, log_file: Path) -> logging.Handler:
    terminal = logging.StreamHandler(stream or sys.stderr)
    terminal.setLevel(logging.WARNING)
    terminal.addFilter(_not_credential_probing)
    terminal.addFilter(_not_told_by_command)
    terminal.setFormatter(TerminalFormatter(log_file))
    return terminal


def _not_told_by_command(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR or not _told_by_command.get()


def _not_credential_probing(record: logging.LogRecord) -> bool:
    """google.auth warns as it probes for credentials (no metadata server off Google Cloud); a
    command that finds none says so in one line of its own, so the warning stays in the log file."""
    return not (record.name.startswith("google.auth") and record.levelno < logging.ERROR)


def get(name: str) -> logging.Logger:
    return logging.getLogger(name)


def event(logger: logging.Logger, message: str, level: int = logging.INFO, *,
          exc_info: BaseException | None = None, **fields: object) -> None:
    """A log line with structured fields (counts, durations) beside the message, and the stack
    trace of `exc_info` if given."""
    logger.log(level, message, extra={"fields": fields}, stacklevel=2, exc_info=exc_info)
