"""Expected failures of a command print one line and exit 2: no traceback for what a user can fix."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

from google.auth.exceptions import DefaultCredentialsError

from matrix_sync.console import errors, styled

# Every command that reaches Google Cloud meets this when no local stack runs and nobody logged in.
NO_CREDENTIALS = ("no Google credentials found, and no local stack is running: start one with `matrix-sync stack "
                  "up`, or log in with `gcloud auth application-default login`")


def one_line_errors(*expected: type[BaseException]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Also a file or directory the command cannot use (see `path_error`); any other OSError (a
    socket, say) is no user's doing and keeps its traceback."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
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
