"""Expected failures of a command print one line and exit 2: no traceback for what a user can fix."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from google.auth.exceptions import DefaultCredentialsError

from matrix_sync.console import errors, styled

# Every command that reaches Google Cloud meets this when no local stack runs and nobody logged in.
NO_CREDENTIALS = ("no Google credentials found, and no local stack is running: start one with `matrix-sync stack "
                  "up`, or log in with `gcloud auth application-default login`")


def one_line_errors(*expected: type[BaseException]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except (*expected, DefaultCredentialsError) as error:
                text = NO_CREDENTIALS if isinstance(error, DefaultCredentialsError) else str(error).strip()
                errors.print(styled("error:", "bold red", f" {text.splitlines()[0] if text else type(error).__name__}"),
                             highlight=False, soft_wrap=True)
                sys.exit(2)

        return wrapper

    return decorate
