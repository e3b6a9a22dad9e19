"""Keeps passwords out of logs, errors, manifests and ledger rows."""
from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
_KEY_VALUE = re.compile(r"(?i)\b(password|pwd|passwd|secret|token)=([^;&\s]+)")


def redact(text: str) -> str:
    """Replaces the password part of URLs and password=... pairs with ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEY_VALUE.sub(lambda m: f"{m[1]}=***", text)
