"""Detached service processes: start, wait until they answer, recognise them later, stop them."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from matrix_sync.stack.errors import StackError
from matrix_sync.stack.ports import port_answers

# Popen objects of the services this interpreter started: kept so they are reaped on stop
# (no zombies) and never garbage-collected while running (no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Identity:
    cmdline: list[str]
    proc_start: int


def spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> int:
    """Start `command` in its own session, output appended to `log`; returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def wait_ready(name: str, pid: int, ports: list[int], log: Path, timeout: float) -> None:
    """Wait until every port answers; StackError with the log's last lines if the process dies or hangs."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if not alive(pid):
            raise StackError(f"{name} exited during start; last log lines: {tail(log)} (full log: {log})")
        pending = [port for port in pending if not port_answers(port)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{name} did not answer on port {pending[0]} within {timeout:.0f} s; "
                f"last log lines: {tail(log)} (full log: {log})"
            )
        time.sleep(0.05)


def identity(pid: int) -> Identity | None:
    """Command line and start time of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw_cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # fields after the parenthesised command name: state is the 1st, starttime the 20th
    after_name = stat.rsplit(")", 1)[1].split()
    if after_name[0] in ("Z", "X"):
        return None
    return Identity(cmdline=[part.decode() for part in raw_cmdline.split(b"\0") if part], proc_start=int(after_name[19]))


def alive(pid: int) -> bool:
    _reap(pid)
    return identity(pid) is not None


def is_same_process(pid: int, cmdline: list[str], proc_start: int) -> bool:
    """True only if pid is alive and is still the process recorded (never a reused pid)."""
    _reap(pid)
    current = identity(pid)
    return current is not None and current.cmdline == cmdline and current.proc_start == proc_start


def stop_all(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM each pid's process group, wait up to `grace` seconds, then SIGKILL what is left."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = list(pids)
    while remaining and time.monotonic() < deadline:
        remaining = [pid for pid in remaining if _group_alive(pid)]
        if remaining:
            time.sleep(0.05)
    for pid in remaining:
        _signal_group(pid, signal.SIGKILL)
    for pid in remaining:
        kill_deadline = time.monotonic() + 2.0
        while _group_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.02)


def kill_now(pid: int, sig: signal.Signals = signal.SIGKILL, timeout: float = 10.0) -> None:
    """Sends `sig` to pid's process group at once, as a crash would; waits until the group is gone."""
    _signal_group(pid, sig)
    deadline = time.monotonic() + timeout
    while _group_alive(pid):
        if time.monotonic() > deadline:
            raise StackError(f"process group {pid} still alive {timeout:.0f} s after {sig.name}")
        time.sleep(0.02)


def suspend(pid: int, frozen: bool) -> None:
    """SIGSTOP / SIGCONT the group: the process keeps its sockets but answers nothing (a stalled network)."""
    _signal_group(pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def tail(log: Path, lines: int = 5) -> str:
    try:
        with log.open(errors="replace") as handle:
            last = deque((line.rstrip() for line in handle if line.strip()), maxlen=lines)
    except OSError:
        return "(no log)"
    return " | ".join(last) or "(log empty)"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:  # not a group leader after all: signal only the process itself
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process of the group is left (leader included)."""
    _reap(pgid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            after_name = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[2]) == pgid and after_name[0] not in ("Z", "X"):
            return True
    return False


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
