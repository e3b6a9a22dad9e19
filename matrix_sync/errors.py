"""Expected failures of a command print one line and exit 2: no traceback for what a user can fix."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

import requests
from google.api_core.exceptions import RetryError
from google.auth.exceptions import DefaultCredentialsError

from matrix_sync.console import errors, styled

# Every command that reaches Google Cloud meets this when no local stack runs and nobody logged in.
NO_CREDENTIALS = ("no Google credentials found, and no local stack is running: start one with `matrix-sync stack "
                  "up`, or log in with `gcloud auth application-default login`")


def one_line_errors(*expected: type[BaseException]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Also a file or directory the command cannot use (see `path_error`), and a BigQuery request
    that outlived MATRIX_BIGQUERY_REQUEST_TIMEOUT_S (see `bigquery_timeout_line`); any other OSError
    (a socket, say) is no user's doing and keeps its traceback."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except (requests.exceptions.Timeout, RetryError) as error:
                line = bigquery_timeout_line(error)
                if line is not None:
                    fail(line)
                if not isinstance(error, expected):
                    raise
                text = str(error).strip()
                fail(text.splitlines()[0] if text else type(error).__name__)
            except (*expected, DefaultCredentialsError) as error:
                text = NO_CREDENTIALS if isinstance(error, DefaultCredentialsError) else str(error).strip()
                fail(text.splitlines()[0] if text else type(error).__name__)
            except OSError as error:
                line = path_error(error)
                if line is None:
                    raise
                fail(line)

        return wrapper

    return decorate


def bigquery_timeout_line(error: BaseException, what: str = "a BigQuery request") -> str | None:
    """One line for a BigQuery request that timed out, naming the setting that bounds it (None for
    any other error). The read timeout surfaces as `requests`' ReadTimeout (or, from the real
    service, as the RetryError the client's retry ends with), whose own text names no setting."""
    from shared import bigquery as bq

    if not bq.request_timed_out(error):
        return None
    return f"{what} {bq.request_timeout_hint()}"


def path_error(error: OSError) -> str | None:
    """`path: reason` for an OSError about a file or directory (None for one that names no path)."""
    if error.filename is None:
        return None
    reason = error.strerror or type(error).__name__
    paths = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else str(error.filename)
    return f"{paths}: {reason}"


def fail(text: str) -> NoReturn:
    errors.print(styled("error:", "bold red", f" {text}"), highlight=False, soft_wrap=True)
    sys.exit(2)
