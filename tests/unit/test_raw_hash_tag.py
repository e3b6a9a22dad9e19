"""The raw-hash tag names the extractor's code and the libraries that convert values, so a base index
written by another release is never trusted to say a row would convert the same (shared/raw_hash.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

from matrix_sync.package import ROOT, reachable_files
from shared import raw_hash


def test_the_tag_names_this_packages_extractor_code() -> None:
    assert raw_hash.tag().endswith(f"/code-{raw_hash.code_digest()}")


def test_a_change_to_a_module_the_extractor_reaches_or_a_library_version_gives_another_digest(tmp_path: Path) -> None:
    copy = tmp_path / "shared"
    shutil.copytree(raw_hash.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert raw_hash.code_digest(copy) == raw_hash.code_digest()
    assert raw_hash.code_digest(copy, libraries=("pyarrow", "no-such-library")) != raw_hash.code_digest(
        copy, libraries=("pyarrow",))

    convert = copy / "columnar_convert.py"
    convert.write_text(convert.read_text() + "\n# one more line\n")
    assert raw_hash.code_digest(copy) != raw_hash.code_digest()
    convert.write_text(convert.read_text().removesuffix("\n# one more line\n"))
    assert raw_hash.code_digest(copy) == raw_hash.code_digest()

    merge = copy / "loader" / "merge_sql.py"  # the loader's code converts nothing the extractor ships
    merge.write_text(merge.read_text() + "\n# one more line\n")
    assert raw_hash.code_digest(copy) == raw_hash.code_digest()


def test_the_extractor_functions_archive_gives_the_same_digest_as_a_full_install(tmp_path: Path) -> None:
    """The function's archive ships only the modules its entry reaches: the digest reads no others."""
    archive = tmp_path / "archive"
    for path in reachable_files(ROOT / "functions" / "extractor" / "main.py"):
        target = archive / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    assert len(list((archive / "shared").rglob("*.py"))) < len(list(raw_hash.PACKAGE.rglob("*.py")))
    assert raw_hash.code_digest(archive / "shared") == raw_hash.code_digest()
