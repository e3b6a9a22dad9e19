"""The raw-hash tag names the code and libraries that convert values, so a base index written by
another release is never trusted to say a row would convert the same (shared/raw_hash.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

from shared import raw_hash

PACKAGE = Path(raw_hash.__file__).resolve().parent


def test_the_tag_names_this_packages_code() -> None:
    assert raw_hash.TAG.endswith(f"/code-{raw_hash.code_digest(PACKAGE)}")


def test_any_change_to_a_module_or_a_library_version_gives_another_digest(tmp_path: Path) -> None:
    copy = tmp_path / "shared"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert raw_hash.code_digest(copy) == raw_hash.code_digest(PACKAGE)
    assert raw_hash.code_digest(copy, ("pyarrow", "no-such-library")) != raw_hash.code_digest(copy, ("pyarrow",))

    convert = copy / "columnar_convert.py"
    convert.write_text(convert.read_text() + "\n# one more line\n")
    assert raw_hash.code_digest(copy) != raw_hash.code_digest(PACKAGE)
    (copy / "extractor" / "renamed.py").write_bytes((copy / "extractor" / "prepare.py").read_bytes())
    (copy / "extractor" / "prepare.py").unlink()
    convert.write_text(convert.read_text().removesuffix("\n# one more line\n"))
    assert raw_hash.code_digest(copy) != raw_hash.code_digest(PACKAGE)  # a module's name counts too
