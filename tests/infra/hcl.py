"""infra/*.tf as python-hcl2 sees them: blocks as dicts, expressions as "${...}" strings."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


@dataclass
class Module:
    directory: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def blocks(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(file name, block) for every top-level block of `kind` (resource, data, variable, ...)."""
        return [(name, block) for name, parsed in self.files.items() for block in parsed.get(kind, [])]

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self.blocks("resource"):
            found.update(block.get(type_, {}))
        return found

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        resources = self.resources(type_)
        assert name in resources, f"no resource {type_}.{name} in infra/"
        return resources[name]

    def resource_file(self, type_: str, name: str) -> str:
        for file, block in self.blocks("resource"):
            if name in block.get(type_, {}):
                return file
        raise KeyError(f"{type_}.{name}")

    def all_resources(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(type_, name, body) for _, block in self.blocks("resource")
                for type_, named in block.items() for name, body in named.items()]

    def variables(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self.blocks("variable"):
            found.update(block)
        return found

    def outputs(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for _, block in self.blocks("output"):
            found.update(block)
        return found

    def locals(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for _, block in self.blocks("locals"):
            found.update({k: v for k, v in block.items() if not k.startswith("__")})
        return found


def load_module(directory: Path) -> Module:
    module = Module(directory)
    for path in sorted(directory.glob("*.tf")):
        module.files[path.name] = parse(path)
    return module


def parse(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


def one(blocks: Any) -> dict[str, Any]:
    """The single block of a nested block list, e.g. one(body["service_config"])."""
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one block, got {blocks!r}"
    return blocks[0]


def dynamic(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The `dynamic "name"` block of a resource body."""
    for block in body.get("dynamic", []):
        if name in block:
            return block[name]
    raise AssertionError(f"no dynamic {name!r} block")


def expression(value: Any) -> str:
    """The text of an expression, without ${ }, spaces normalised."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return re.sub(r"\s+", " ", text).strip()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
