"""Builds each Cloud Function's deployable source, reproducibly: `dist/<function>.zip`.

A zip holds the function's `main.py`, the Python sources of `shared/` and a `requirements.txt` that
locks the whole runtime: the distributions the function imports (found by following its imports
through `shared/`, each pinned by the repository's `requirements.txt`), the SQLAlchemy drivers it
loads by name, and every distribution those require, transitively, each at the version installed
in the environment that builds it (the one the tests ran in). Files are stored in sorted order with
a fixed timestamp and mode, so the same sources give the same bytes, and Terraform's content-hash
object name changes only when the code or a locked version does.

    python -m matrix_sync.package [--out dist] [--function loader ...]
"""
from __future__ import annotations

import argparse
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

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from shared import module_files

ROOT = Path(__file__).resolve().parent.parent
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can store
FILE_MODE = 0o644 << 16
SHARED = "shared"
# Distributions loaded by name at run time rather than imported: SQLAlchemy's dialect drivers, one
# per source kind source.url may name (SQL Server, PostgreSQL, MySQL/MariaDB).
RUNTIME_EXTRAS: dict[str, tuple[str, ...]] = {"extractor": ("pymssql", "psycopg2-binary", "PyMySQL")}
# Files pinning versions: the runtime's, and the test suite's, which pins the PostgreSQL and MySQL drivers.
PIN_FILES = ("requirements.txt", "requirements-dev.txt")
# Installers, never a runtime dependency worth pinning (the runtime brings its own).
NOT_LOCKED = frozenset({"pip", "setuptools", "wheel"})
# Where the archives run, for environment markers: Cloud Functions' python312 runtime.
RUNTIME_MARKERS = {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "python_version": "3.12"}
# What shared/ holds that the runtime needs: its Python sources (it reads no data file of its own).
SOURCE_SUFFIXES = (".py",)
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
    """`name==version` for every distribution the function needs, transitively, as installed here."""
    pins = pinned_requirements(root / "requirements.txt")
    imported = _imported_distributions(function, root)
    missing = sorted(imported - pins.keys() - set(_closure(imported & pins.keys())))
    if missing:
        raise PackagingError(f"{function} needs {', '.join(missing)}, which requirements.txt does not pin")
    lock = _closure(imported | {_canonical(d) for d in RUNTIME_EXTRAS.get(function, ())})
    _check_pins(lock, root)
    return tuple(f"{lock[name].metadata['Name']}=={lock[name].version}" for name in sorted(lock))


def _imported_distributions(function: str, root: Path) -> set[str]:
    found = set()
    for module in third_party_imports(root / "functions" / function / "main.py", root):
        distribution = distribution_of(module)
        if distribution is None:
            raise PackagingError(f"{function}: cannot tell which distribution provides {module!r}")
        found.add(distribution)
    return found


def _check_pins(lock: dict[str, importlib.metadata.Distribution], root: Path) -> None:
    """A locked distribution the repository pins must be installed at that pin: the lock is what was tested."""
    for file in (f for f in PIN_FILES if (root / f).is_file()):
        for name, (written, version) in pinned_requirements(root / file).items():
            if name in lock and lock[name].version != version:
                raise PackagingError(f"{written} {lock[name].version} is installed, {file} pins {version}: "
                                     "reinstall the environment (make setup) and run the tests again")


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
        for module in module_files.imports_of(path)
        if module.split(".")[0] not in (SHARED, "__future__") and module.split(".")[0] not in sys.stdlib_module_names
    }


def reachable_files(entry: Path, root: Path = ROOT, packages: tuple[str, ...] = (SHARED,)) -> set[Path]:
    """`entry` and the files of every module of `packages` (the project's own: `shared` by default)
    its imports reach, transitively."""
    return module_files.reachable_files(entry, root, packages)


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


def _closure(roots: set[str]) -> dict[str, importlib.metadata.Distribution]:
    """canonical name -> installed distribution, for `roots` and everything they require on the
    runtime (environment markers and extras evaluated for it), transitively; installers left out."""
    found: dict[str, importlib.metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    pending: list[tuple[str, frozenset[str]]] = [(name, frozenset()) for name in roots]
    while pending:
        name, extras = pending.pop()
        if name in NOT_LOCKED or (name in found and extras <= extras_seen[name]):
            continue
        distribution = found[name] if name in found else _installed(name)
        found[name] = distribution
        extras_seen.setdefault(name, set()).update(extras)
        pending.extend((_canonical(r.name), frozenset(r.extras)) for r in _requires(distribution, extras))
    return found


def _installed(name: str) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        raise PackagingError(f"{name} is needed at run time but not installed here, so its tested version is "
                             "unknown: install the requirements (make setup)") from None


def _requires(distribution: importlib.metadata.Distribution, extras: frozenset[str]) -> Iterator[Requirement]:
    """What `distribution` (with `extras`) requires on the runtime."""
    environments = [{**default_environment(), **RUNTIME_MARKERS, "extra": extra} for extra in {"", *extras}]
    for line in distribution.requires or ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise PackagingError(f"{distribution.metadata['Name']}: unreadable requirement {line!r}: {error}") from None
        if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
            yield requirement


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
    """The sources under `directory`: no hidden file or folder (.env, .matrix-sync/), no cache, no data."""
    return sorted(
        (p for p in directory.rglob("*")
         if p.is_file() and p.suffix in SOURCE_SUFFIXES
         and not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(directory).parts)),
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
