"""Reads one secret version from Secret Manager; the value is masked in every log line from then on.

`SECRET_MANAGER_EMULATOR_HOST` (tests only: there is no Secret Manager emulator) points the real
client, over its REST transport and without credentials, at a local server.
"""
from __future__ import annotations

import os
from functools import cache

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager

from shared import secrets

EMULATOR_HOST = "SECRET_MANAGER_EMULATOR_HOST"
TIMEOUT_S = 30.0


class SecretAccessError(RuntimeError):
    """A secret version that cannot be read; the message names the version, never its value."""


@cache
def secret_manager_client() -> secretmanager.SecretManagerServiceClient:
    endpoint = os.environ.get(EMULATOR_HOST)
    if endpoint:
        if not endpoint.startswith("http"):
            endpoint = f"http://{endpoint}"
        return secretmanager.SecretManagerServiceClient(
            transport="rest", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))
    return secretmanager.SecretManagerServiceClient()


def access_secret(version: str, client: secretmanager.SecretManagerServiceClient | None = None) -> str:
    """The UTF-8 text of a secret version (projects/P/secrets/S/versions/V), checked against its CRC32C."""
    client = client or secret_manager_client()
    try:
        response = client.access_secret_version(name=version, timeout=TIMEOUT_S)
    except gexc.NotFound:
        raise SecretAccessError(f"Secret Manager has no secret version {version}: create it "
                                "(gcloud secrets versions add) or fix source.password_secret") from None
    except gexc.Forbidden:  # PermissionDenied over gRPC, a plain 403 over REST
        raise SecretAccessError(f"permission denied reading {version}: this identity needs "
                                "roles/secretmanager.secretAccessor on that secret") from None
    except gexc.GoogleAPICallError as error:
        raise SecretAccessError(f"cannot read {version}: {type(error).__name__} {error.code or ''}".rstrip()) from None
    payload = response.payload
    if "data_crc32c" in payload and google_crc32c.value(payload.data) != payload.data_crc32c:
        raise SecretAccessError(f"{version} arrived corrupted (CRC32C mismatch)")
    try:
        value = payload.data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretAccessError(f"{version} is not UTF-8 text") from None
    secrets.register(value)
    return value
