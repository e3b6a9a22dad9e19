"""Which Google API permissions each deployed identity's code needs, read from the code itself.

From a function's entry point, every function it can call is followed by name through the `shared`
modules its package ships (matrix_sync.package.reachable_files); the Google client methods those
bodies call, and the SQL they send, are turned into the IAM permissions those calls require."""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from matrix_sync.package import reachable_files

# client method -> permissions it needs (google-cloud-storage, -bigquery, -pubsub, -secret-manager)
CALL_PERMISSIONS: dict[str, frozenset[str]] = {name: frozenset(perms) for name, perms in {
    "upload_from_string": {"storage.objects.create"},
    "upload_from_file": {"storage.objects.create"},
    "upload_from_filename": {"storage.objects.create"},
    "download_as_bytes": {"storage.objects.get"},
    "download_as_text": {"storage.objects.get"},
    "download_to_file": {"storage.objects.get"},
    "get_blob": {"storage.objects.get"},
    "list_blobs": {"storage.objects.list"},
    "delete_blob": {"storage.objects.delete"},
    "create_bucket": {"storage.buckets.create"},
    "lookup_bucket": {"storage.buckets.get"},
    "get_bucket": {"storage.buckets.get"},
    "query": {"bigquery.jobs.create"},
    "load_table_from_uri": {"bigquery.jobs.create", "bigquery.tables.updateData"},
    "load_table_from_file": {"bigquery.jobs.create", "bigquery.tables.updateData"},
    "create_table": {"bigquery.tables.create"},
    "delete_table": {"bigquery.tables.delete"},
    "update_table": {"bigquery.tables.update"},
    "get_table": {"bigquery.tables.get"},
    "list_tables": {"bigquery.tables.list"},
    "list_rows": {"bigquery.tables.getData"},
    "insert_rows_json": {"bigquery.tables.updateData"},
    "create_dataset": {"bigquery.datasets.create"},
    "update_dataset": {"bigquery.datasets.update"},
    "get_dataset": {"bigquery.datasets.get"},
    "publish": {"pubsub.topics.publish"},
    "pull": {"pubsub.subscriptions.consume"},
    "subscribe": {"pubsub.subscriptions.consume"},
    "acknowledge": {"pubsub.subscriptions.consume"},
    "create_topic": {"pubsub.topics.create"},
    "create_subscription": {"pubsub.subscriptions.create"},
    "access_secret_version": {"secretmanager.versions.access"},
}.items()}
OVERWRITE = "upload_from_* replacing a live object"
CALL_PERMISSIONS[OVERWRITE] = frozenset({"storage.objects.create", "storage.objects.delete"})
# SQL the code sends in queries and scripts -> table permissions
_SQL_WRITE = re.compile(r"\b(MERGE\s|INSERT\s+(INTO\s)?|UPDATE\s+`|DELETE\s+FROM\s|TRUNCATE\s+TABLE)", re.I)
_SQL_CREATE = re.compile(r"\bCREATE\s+(OR\s+REPLACE\s+)?(TEMP\w*\s+)?TABLE\b", re.I)
_SQL_READ = re.compile(r"\bSELECT\b[\s\S]*\bFROM\b", re.I)

Function = ast.FunctionDef | ast.AsyncFunctionDef
# Functions that only ever run against the local emulators (guarded by shared.clients.emulated()):
# their calls need no role in a deployment, so they are not followed.
LOCAL_STACK_ONLY = {"create_missing_dataset"}


def _definitions(files: set[Path]) -> dict[str, list[Function]]:
    """Every function and method of the files, by name (calls are resolved by name: over-approximate)."""
    found: dict[str, list[Function]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):  # constructing a class runs its dunder methods
                found.setdefault(node.name, []).extend(
                    n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.name.startswith("__"))
    return found


def _names_used(body: Function) -> Iterator[str]:
    for node in ast.walk(body):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr


def _best_effort_calls(body: Function) -> set[str]:
    """Calls inside `try` blocks that tolerate PermissionDenied/Forbidden: they need no permission."""
    tolerated: set[str] = set()
    for node in ast.walk(body):
        if isinstance(node, ast.Try) and any(
            ("PermissionDenied" in ast.unparse(h.type) or "Forbidden" in ast.unparse(h.type))
            and not any(isinstance(n, ast.Raise) for n in ast.walk(h))  # swallowed, not re-raised
            for h in node.handlers if h.type is not None
        ):
            for statement in node.body:
                tolerated |= {n.func.attr for n in ast.walk(statement)
                              if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    return tolerated


def _overwrites(body: Function) -> bool:
    """An upload conditioned on a generation read before replaces a live object (needs delete in GCS)."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr.startswith("upload_from")
               and any(k.arg == "if_generation_match" and isinstance(k.value, ast.Name) for k in node.keywords)
               for node in ast.walk(body))


def _strings(body: Function) -> Iterator[str]:
    docstring = ast.get_docstring(body, clean=False)
    for node in ast.walk(body):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != docstring:
            yield node.value


def reached(entry_file: Path, entry_points: list[str]) -> tuple[set[str], list[str]]:
    """(names called or referenced by every function reachable from the entry points, their strings)."""
    definitions = _definitions(reachable_files(entry_file))
    pending = [body for name in entry_points for body in definitions[name]]
    seen: set[int] = set()
    names: set[str] = set()
    tolerated: set[str] = set()
    strings: list[str] = []
    while pending:
        body = pending.pop()
        if id(body) in seen:
            continue
        seen.add(id(body))
        strings.extend(_strings(body))
        if _overwrites(body):
            names.add(OVERWRITE)
        tolerated |= _best_effort_calls(body)
        for name in _names_used(body):
            names.add(name)
            if name not in LOCAL_STACK_ONLY:
                pending.extend(definitions.get(name, []))
    return names - (tolerated - _called_outside(definitions, seen, tolerated)), strings


def _called_outside(definitions: dict[str, list[Function]], seen: set[int], names: set[str]) -> set[str]:
    """Of `names`, those also called somewhere reached outside a best-effort block."""
    outside: set[str] = set()
    for bodies in definitions.values():
        for body in bodies:
            if id(body) in seen:
                outside |= (set(_names_used(body)) & names) - _best_effort_calls(body)
    return outside


def permissions_needed(entry_file: Path, entry_points: list[str]) -> dict[str, set[str]]:
    """permission -> the calls (or SQL) that need it."""
    names, strings = reached(entry_file, entry_points)
    needed: dict[str, set[str]] = {}
    for name in names & CALL_PERMISSIONS.keys():
        for permission in CALL_PERMISSIONS[name]:
            needed.setdefault(permission, set()).add(name)
    sql = "\n".join(strings)
    for pattern, permission in ((_SQL_WRITE, "bigquery.tables.updateData"), (_SQL_CREATE, "bigquery.tables.create"),
                                (_SQL_READ, "bigquery.tables.getData")):
        if pattern.search(sql):
            needed.setdefault(permission, set()).add(f"SQL /{pattern.pattern[:24]}.../")
    return needed
