"""Builds each Cloud Function's deployable source, reproducibly: `dist/<function>.zip`.

A zip holds the function's `main.py`, the whole `shared/` package and a `requirements.txt` that
pins only the runtime distributions the function imports (found by following its imports through
`shared/`), with the versions of the repository's `requirements.txt`. Files are stored in sorted
order with a fixed timestamp and mode, so the same sources give the same bytes, and Terraform's
content-hash object name changes only when the code does.

    python -m matrix_sync.package [--out dist] [--function loader ...]
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import importlib.util
import re
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can store
FILE_MODE = 0o644 << 16
SHARED = "shared"
# Distributions loaded by name at run time rather than imported: SQLAlchemy's dialect drivers.
RUNTIME_EXTRAS: dict[str, tuple[str, ...]] = {"extractor": ("pymssql",)}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


class PackagingError(RuntimeError):
    """The sources cannot be packaged; the message names the file or requirement at fault."""


@dataclass(frozen=True)
class Package:
    function: str
    path: Path
    sha256: str
    requirements: tuple[str, ...]


def function_names(root: Path = ROOT) -> list[str]:
    return sorted(p.parent.name for p in (root / "functions").glob("*/main.py"))


def build_all(out: Path, functions: Iterable[str] | None = None, root: Path = ROOT) -> list[Package]:
    names = list(functions) if functions else function_names(root)
    return [build(name, out, root) for name in names]


def build(function: str, out: Path, root: Path = ROOT) -> Package:
    main = root / "functions" / function / "main.py"
    if not main.is_file():
        raise PackagingError(f"{main}: no such function source")
    requirements = runtime_requirements(function, root)
    entries = {"main.py": main.read_bytes(),
               "requirements.txt": ("".join(f"{line}\n" for line in requirements)).encode()}
    for path in _package_files(root / SHARED):
        entries[path.relative_to(root).as_posix()] = path.read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{function}.zip"
    _write_zip(target, entries)
    return Package(function, target, hashlib.sha256(target.read_bytes()).hexdigest(), requirements)


def runtime_requirements(function: str, root: Path = ROOT) -> tuple[str, ...]:
    """`name==version` for every distribution the function needs, in the repository's pins."""
    pins = pinned_requirements(root / "requirements.txt")
    needed = {_canonical(d) for d in RUNTIME_EXTRAS.get(function, ())}
    for module in third_party_imports(root / "functions" / function / "main.py", root):
        distribution = distribution_of(module)
        if distribution is None:
            raise PackagingError(f"{function}: cannot tell which distribution provides {module!r}")
        needed.add(distribution)
    missing = sorted(needed - pins.keys() - _dependencies_of(needed & pins.keys()))
    if missing:
        raise PackagingError(f"{function} needs {', '.join(missing)}, which requirements.txt does not pin")
    # imported directly but installed as a dependency of a pinned distribution (google-api-core, ...):
    # pip resolves it from the pinned distribution's own requirements
    return tuple(f"{pins[name][0]}=={pins[name][1]}" for name in sorted(needed & pins.keys()))


def pinned_requirements(path: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version) for each `name==version` line."""
    pins: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            pins[_canonical(match[1])] = (match[1], match[2])
    return pins


def third_party_imports(entry: Path, root: Path = ROOT) -> set[str]:
    """Dotted names of the non-stdlib modules imported by `entry` and by every `shared` module it reaches."""
    return {
        module
        for path in reachable_files(entry, root)
        for module in _imports(path)
        if module.split(".")[0] not in (SHARED, "__future__") and module.split(".")[0] not in sys.stdlib_module_names
    }


def reachable_files(entry: Path, root: Path = ROOT) -> set[Path]:
    """`entry` and the files of every `shared` module its imports reach, transitively."""
    seen: set[Path] = set()
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            if module.split(".")[0] == SHARED:
                pending.extend(_shared_files(module, root))
    return seen


def distribution_of(module: str) -> str | None:
    """The installed distribution that ships `module` (the longest importable prefix of it)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin in (None, "namespace"):
            continue
        owner = _file_owners().get(Path(spec.origin).resolve())
        if owner:
            return owner
    return None


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from google.cloud import bigquery` imports google.cloud.bigquery when that is a module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _shared_files(module: str, root: Path) -> list[Path]:
    """The files executed by importing `module` (and each package on the way), if they exist."""
    parts = module.split(".")
    files = []
    for end in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:end])
        for candidate in (base / "__init__.py", base.with_suffix(".py")):
            if candidate.is_file():
                files.append(candidate)
    return files


def _dependencies_of(distributions: set[str]) -> set[str]:
    """Every distribution the installed `distributions` require, transitively (extras left out)."""
    found: set[str] = set()
    pending = list(distributions)
    while pending:
        try:
            requires = importlib.metadata.distribution(pending.pop()).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement.replace("extra==", "extra =="):
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            name = _canonical(match[0]) if match else ""
            if name and name not in found:
                found.add(name)
                pending.append(name)
    return found


@cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in importlib.metadata.distributions():
        name = _canonical(dist.metadata["Name"])
        for file in dist.files or ():
            if file.suffix == ".py":
                owners[Path(str(dist.locate_file(file))).resolve()] = name
    return owners


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _package_files(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.rglob("*")
         if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")),
        key=lambda p: p.as_posix(),
    )


def _write_zip(target: Path, entries: dict[str, bytes]) -> None:
    temporary = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(temporary, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = FILE_MODE
            info.create_system = 3  # unix, whatever the building machine
            archive.writestr(info, entries[name], compresslevel=9)
    temporary.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matrix_sync.package", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--function", action="append", choices=function_names(), help="only this function (repeatable)")
    args = parser.parse_args(argv)
    try:
        packages = build_all(args.out, args.function)
    except PackagingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for package in packages:
        print(f"{package.path}  sha256={package.sha256[:16]}  {' '.join(package.requirements)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
