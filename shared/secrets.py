"""Keeps passwords out of logs, errors, manifests and ledger rows."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

# The password of a URL's user part runs to the last '@' before the host: one written with an
# unencoded '@' (root:Ab@Secret9@db) is masked whole, not up to its first '@'.
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):"
                          r"(?P<password>[^@\s]*(?:@[^@\s/?#]*(?=@))*)@", re.I)
_KEY_VALUE = re.compile(r"(?i)\b(password|pwd|passwd|secret|token)=([^;&\s]+)")
_PASSWORD_KEYS = ("password", "pwd", "passwd")


_known: set[str] = set()


def register(secret: str | None) -> None:
    """A value (e.g. the source password) to cut out of every log line and error from now on."""
    if secret and len(secret) >= 3:
        _known.add(secret)


def register_url(url: str) -> None:
    """Every password a URL holds, as written and as a driver receives it, cut out from now on."""
    for password in url_passwords(url):
        register(password)


def url_passwords(url: str) -> set[str]:
    """The user part's password and the query's password=/pwd= values (also inside a connection
    string such as odbc_connect), each as written and percent-decoded."""
    written = [match["password"] for match in URL_PASSWORD.finditer(url)]
    query = url.partition("?")[2]
    written += [match[2] for match in _KEY_VALUE.finditer(query) if match[1].lower() in _PASSWORD_KEYS]
    for name, value in parse_qsl(query):  # decoded as the driver gets them ('+' a space)
        if name.lower() in _PASSWORD_KEYS:
            written.append(value)
        written += [match[2] for match in _KEY_VALUE.finditer(value) if match[1].lower() in _PASSWORD_KEYS]
    return {form for password in written for form in (password, unquote(password)) if form}


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
