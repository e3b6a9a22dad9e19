"""Keeps passwords out of logs, errors, manifests and ledger rows."""
from __future__ import annotations

import re

URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
_KEY_VALUE = re.compile(r"(?i)\b(password|pwd|passwd|secret|token)=([^;&\s]+)")


_known: set[str] = set()


def register(secret: str | None) -> None:
    """A value (e.g. the source password) to cut out of every log line and error from now on."""
    if secret and len(secret) >= 3:
        _known.add(secret)


def redact(text: str) -> str:
    """Removes registered secrets, the password part of URLs and password=... pairs."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEY_VALUE.sub(lambda m: f"{m[1]}=***", text)


def error_line(error: BaseException) -> str:
    """An error's first line, secrets removed: what a one-line report or a ledger row may show."""
    lines = str(error).strip().splitlines()
    return redact(lines[0]) if lines else type(error).__name__
