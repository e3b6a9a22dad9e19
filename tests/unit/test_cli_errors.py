"""What a user gets wrong is one line and exit 2 through the whole CLI (`matrix_sync.cli.main`, with
click's CliRunner): a file or directory it cannot use, named with the OS's reason, and a config
file that is not YAML, with where and why. Other OS errors keep their traceback."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from matrix_sync import sample
from matrix_sync.cli import _Commands, main
from shared import logs
from tests.support import write_config

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not PROC.is_dir(), reason="/proc: a directory no one may create files in")


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    yield
    logs.configure()  # main pointed the root logger at a test's file


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """A regular file: no directory can be made under it, even by root (whom file modes do not stop)."""
    path = tmp_path / "plain-file"
    path.write_text("")
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    database = tmp_path / "matrix.db"
    sample.create_sample(database, "tiny", seed=5)
    write_config(tmp_path / "matrix.yaml", url=f"sqlite:///{database}", tables={"customers": ["customer_id"]},
                 suffix="errors")
    return tmp_path / "matrix.yaml"


def cli(*args: str, log_file: Path | None) -> Result:
    options = ["--log-file", str(log_file)] if log_file is not None else []
    return CliRunner().invoke(main, [*options, *args])


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.output, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_log_file_that_cannot_be_written_is_one_line(a_file: Path, tmp_path: Path) -> None:
    line = one_error_line(cli("sample", "create", "--path", str(tmp_path / "s.db"), log_file=a_file / "x.jsonl"))
    assert line == f"error: cannot write the log file {a_file / 'x.jsonl'}: File exists ({a_file}); " \
                   "--log-file chooses another"


@needs_proc
def test_a_directory_one_cannot_write_the_default_log_file_in_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    monkeypatch.chdir(PROC)
    line = one_error_line(cli("sample", "create", "--path", str(tmp_path / "s.db"), log_file=None))
    assert line.startswith("error: cannot write the log file /proc/.matrix-sync/logs/matrix-sync.jsonl: "
                           "No such file or directory (.matrix-sync)")


@needs_proc
@pytest.mark.parametrize(("args", "path"), [
    (["sample", "create", "--size", "tiny", "--path", "/proc/x.db"], "/proc/x.db"),
    (["demo", "--dir", "/proc/x"], "/proc/x"),
])
def test_a_path_the_os_refuses_is_named_with_its_reason(args: list[str], path: str, tmp_path: Path) -> None:
    assert one_error_line(cli(*args, log_file=tmp_path / "log.jsonl")) == f"error: {path}: No such file or directory"


@pytest.mark.parametrize("command", ["create-tables", "generate-models"])
def test_an_output_directory_that_cannot_be_made_is_one_line(command: str, config_path: Path, a_file: Path,
                                                            tmp_path: Path) -> None:
    out = a_file / "out"
    line = one_error_line(cli(command, "--config", str(config_path), "--out", str(out), log_file=tmp_path / "l.jsonl"))
    assert line.startswith("error: ") and str(a_file) in line and line.endswith(": Not a directory")


def _failing_group(error: OSError) -> click.Group:
    def fail() -> None:
        raise error

    return _Commands("matrix-sync", commands=[click.Command("write", callback=fail)])


def test_a_command_reporting_its_own_errors_still_names_a_path_it_cannot_write() -> None:
    """`report` catches only its own errors; the group turns its failed write into the line."""
    error = FileNotFoundError(2, "No such file or directory", "/proc/x.html")
    result = CliRunner().invoke(_failing_group(error), ["write"])
    assert one_error_line(result) == "error: /proc/x.html: No such file or directory"


def test_an_os_error_about_no_path_keeps_its_traceback() -> None:
    """A refused socket to an emulator is a fault to investigate, not a path to fix."""
    result = CliRunner().invoke(_failing_group(ConnectionRefusedError(111, "Connection refused")), ["write"])
    assert result.exit_code == 1 and isinstance(result.exception, ConnectionRefusedError)


@pytest.mark.parametrize(("text", "expected"), [
    ("source: {url: 'sqlite:///x.db'\ntables: []\n",
     "not valid YAML at line 2, column 1: expected ',' or '}', but got '<scalar>' "
     "(while parsing a flow mapping that starts at line 1, column 9)"),
    ("source:\n  url: x\n   bad: indent\n", "not valid YAML at line 3, column 7: mapping values are not allowed here"),
])
def test_a_config_that_is_not_yaml_names_the_problem_and_where(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = one_error_line(cli("run", "--config", str(path), log_file=tmp_path / "log.jsonl"))
    assert line == f"error: {path}: {expected}"


def test_a_demo_size_not_known_is_refused_before_the_stack_starts(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATRIX_STACK_DIR", str(tmp_path / "stack"))
    line = one_error_line(cli("demo", "--size", "huge", "--dir", str(tmp_path / "demo"), log_file=tmp_path / "l.jsonl"))
    assert line.startswith("error: unknown size 'huge': expected one of tiny, small, medium, large")
    assert not (tmp_path / "stack").exists() and not (tmp_path / "demo").exists()
