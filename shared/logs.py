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


def configure(stream: object = None, log_file: Path | None = None, level: str | None = None) -> None:
    """JSON lines to stderr (functions: Cloud Logging reads them) and optionally to a file."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level or os.environ.get("MATRIX_LOG_LEVEL", "INFO"))
    formatter = CloudLoggingFormatter()
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        console = logging.StreamHandler(stream or sys.stderr)
        console.setLevel(logging.WARNING)
        console.addFilter(_not_credential_probing)
        handlers.append(console)
    else:
        handlers.append(logging.StreamHandler(stream or sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    for noisy in ("urllib3", "google", "grpc", "werkzeug", "gunicorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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
