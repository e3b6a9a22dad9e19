"""Which Google API permissions each deployed identity's code needs, read from the code itself.

From a function's entry point, every function it can call is followed by name through the `shared`
modules its package ships (matrix_sync.package.reachable_files); the Google client methods those
bodies call, and the SQL they send, are turned into the IAM permissions those calls require. An
upload that replaces an existing object (generation-matched, or to a name fixed per table without a
create-only precondition) needs storage.objects.delete too: overwritten_objects names those objects,
so the tests can check that the condition on that permission covers them; deleted_suffixes names the
endings of the objects the code deletes (gcs.delete_with_suffix), for the same check."""
from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
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
    "query_and_wait": {"bigquery.jobs.create"},
    "get_job": {"bigquery.jobs.create"},  # a job of one's own: jobs.create lets its creator read it
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
# Parameters of a builder whose object name is the same for every extraction of a table.
TABLE_PARAMETERS = frozenset({"prefix", "target_table", "table"})
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
        for node in ast.walk(_parsed(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.setdefault(node.name, []).append(node)
            elif isinstance(node, ast.ClassDef):  # constructing a class runs its dunder methods
                found.setdefault(node.name, []).extend(
                    n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.name.startswith("__"))
    return found


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


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


def _string_constants(files: set[Path]) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments of the files (LOCK_FOLDER, OUTCOME_FOLDER, ...)."""
    return {target.id: node.value.value for path in files for node in _parsed(path).body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str) for target in node.targets if isinstance(target, ast.Name)}


def _name_template(builder: Function, constants: dict[str, str]) -> str | None:
    """`{prefix}/_locks/{target_table}.json` for a builder that returns one object name per table: an
    f-string of nothing but string constants and its TABLE_PARAMETERS. None for any other function."""
    body = [s for s in builder.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    parameters = {a.arg for a in builder.args.args}
    if len(body) != 1 or not isinstance(body[0], ast.Return) or not isinstance(body[0].value, ast.JoinedStr) \
            or not parameters or not parameters <= TABLE_PARAMETERS:
        return None
    text = ""
    for part in body[0].value.values:
        if isinstance(part, ast.Constant):
            text += str(part.value)
        elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.format_spec is None:
            name = part.value.id
            if name in parameters:
                text += f"{{{name}}}"
            elif name in constants:
                text += constants[name]
            else:
                return None
        else:
            return None
    return text


def _object_name(call: ast.Call) -> ast.expr | None:
    """The object-name argument of gcs.upload(bucket, name, ...) or of blob(name).upload_from_*(...)."""
    if not isinstance(call.func, ast.Attribute):
        return None
    if call.func.attr == "upload":
        named = [k.value for k in call.keywords if k.arg == "name"]
        return named[0] if named else (call.args[1] if len(call.args) > 1 else None)
    receiver = call.func.value
    if call.func.attr.startswith("upload_from") and isinstance(receiver, ast.Call) \
            and isinstance(receiver.func, ast.Attribute) and receiver.func.attr == "blob" and receiver.args:
        return receiver.args[0]
    return None


def _create_only(call: ast.Call) -> bool:
    """Sent with a precondition that the object does not exist yet: a create, never a replacement."""
    return any((k.arg == "only_if_new" and isinstance(k.value, ast.Constant) and k.value.value is True)
               or (k.arg == "if_generation_match" and isinstance(k.value, ast.Constant) and k.value.value == 0)
               for k in call.keywords)


def _overwrites(body: Function, templates: dict[str, str], own_templates: set[str]) -> set[str]:
    """The objects `body` replaces when they exist (a replacement needs storage.objects.delete in GCS):
    - an upload conditioned on a generation read before: the objects of its own module's name builders
      (`templates`: builder -> name template; `own_templates`: those of body's module), or "?" if none;
    - an upload to a fixed name (a builder's: the same object every time for a table) without a
      create-only precondition: that builder's object."""
    found: set[str] = set()
    assigned = {n.targets[0].id: n.value for n in ast.walk(body)  # name = outcome_name(...); upload(b, name)
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}
    for node in ast.walk(body):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and (node.func.attr == "upload" or node.func.attr.startswith("upload_from"))):
            continue
        if any(k.arg == "if_generation_match" and isinstance(k.value, ast.Name) for k in node.keywords):
            found |= own_templates or {f"? (a generation-matched upload in {body.name})"}
        name = _object_name(node)
        if isinstance(name, ast.Name):
            name = assigned.get(name.id)
        if isinstance(name, ast.Call) and not _create_only(node):
            builder = name.func.id if isinstance(name.func, ast.Name) else getattr(name.func, "attr", None)
            if builder in templates:
                found.add(templates[builder])
    return found


DELETER = "delete_with_suffix"  # shared/gcs.py: deletes an object only if its name ends with the suffix given


def _deletes(body: Function, constants: dict[str, str]) -> set[str]:
    """The name endings of the objects `body` deletes: the suffix of each gcs.delete_with_suffix call (a
    string constant, by name or attribute), "?" for one that cannot be resolved; and a delete_blob call
    anywhere but in that guarded deleter is unresolved too."""
    found: set[str] = set()
    for node in ast.walk(body):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr == DELETER:
            suffix = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "suffix"),
                                                                   None)
            found.add(_constant(suffix, constants) or f"? (a {DELETER} call in {body.name})")
        elif node.func.attr == "delete_blob" and body.name != DELETER:
            found.add(f"? (a delete_blob call in {body.name})")
    return found


def _constant(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return constants.get(name) if name else None


def _strings(body: Function) -> Iterator[str]:
    docstring = ast.get_docstring(body, clean=False)
    for node in ast.walk(body):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value != docstring:
            yield node.value


def reached(entry_file: Path, entry_points: list[str]) -> tuple[set[str], list[str]]:
    """(names called or referenced by every function reachable from the entry points, their strings)."""
    names, strings, _overwritten, _deleted = _reach(entry_file, entry_points)
    return names, strings


def overwritten_objects(entry_file: Path, entry_points: list[str]) -> set[str]:
    """Name templates (`{prefix}/_locks/{target_table}.json`) of the objects the code replaces."""
    return _reach(entry_file, entry_points)[2]


def deleted_suffixes(entry_file: Path, entry_points: list[str]) -> set[str]:
    """How the names of the objects the code deletes end (`.compacted.parquet`)."""
    return _reach(entry_file, entry_points)[3]


def _reach(entry_file: Path, entry_points: list[str]) -> tuple[set[str], list[str], set[str], set[str]]:
    files = reachable_files(entry_file)
    definitions = _definitions(files)
    constants = _string_constants(files)
    templates, by_module = _builders(files, constants)
    module_of = {id(node): path for path in files for node in ast.walk(_parsed(path))
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    pending = [body for name in entry_points for body in definitions[name]]
    seen: set[int] = set()
    names: set[str] = set()
    tolerated: set[str] = set()
    strings: list[str] = []
    overwritten: set[str] = set()
    deleted: set[str] = set()
    while pending:
        body = pending.pop()
        if id(body) in seen:
            continue
        seen.add(id(body))
        strings.extend(_strings(body))
        replaced = _overwrites(body, templates, by_module.get(module_of[id(body)], set()))
        if replaced:
            names.add(OVERWRITE)
            overwritten |= replaced
        deleted |= _deletes(body, constants)
        tolerated |= _best_effort_calls(body)
        for name in _names_used(body):
            names.add(name)
            if name not in LOCAL_STACK_ONLY:
                pending.extend(definitions.get(name, []))
    return names - (tolerated - _called_outside(definitions, seen, tolerated)), strings, overwritten, deleted


def _builders(files: set[Path], constants: dict[str, str]) -> tuple[dict[str, str], dict[Path, set[str]]]:
    """(builder name -> its name template, module -> the templates of its builders)."""
    templates: dict[str, str] = {}
    by_module: dict[Path, set[str]] = {}
    for path in files:
        for node in _parsed(path).body:
            template = _name_template(node, constants) if isinstance(node, ast.FunctionDef) else None
            if template is not None:
                templates[node.name] = template
                by_module.setdefault(path, set()).add(template)
    return templates, by_module


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
