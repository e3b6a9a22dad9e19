"""The source URL the extractor connects with: the config's URL plus the password from the environment
or Secret Manager, resolved at connect time so it is held only by the engine, never by the config file."""
from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from shared import secrets
from shared.config import SourceConfig
from shared.secret_manager import access_secret


def source_url(source: SourceConfig) -> URL:
    """Raises SecretAccessError when source.password_secret cannot be read."""
    url = make_url(source.url)
    if source.password_secret is not None:
        password: str | None = access_secret(source.password_secret)
    elif source.password is not None:
        password = source.password.get_secret_value()
    else:
        password = url.password
    secrets.register(password)  # again here: a worker process unpickles its config without validating it
    return url.set(password=password) if password else url
