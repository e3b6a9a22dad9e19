"""Expected failures of a command print one line and exit 2: no traceback for what a user can fix."""
from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from matrix_sync.console import errors


def one_line_errors(*expected: type[BaseException]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except expected as error:
                text = str(error).strip()
                errors.print(f"[bold red]error:[/] {text.splitlines()[0] if text else type(error).__name__}",
                             highlight=False, soft_wrap=True)
                sys.exit(2)

        return wrapper

    return decorate
