"""The processes around a load test: the memory of each service's process tree, sampled while the
cycles run, and the local stack, stopped afterwards only if the load test started it."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from matrix_sync.stack import LocalStack

OWN_PROCESS = "extractor (this process)"
MEMORY_MEASURE = ("PSS (proportional set size, /proc/<pid>/smaps_rollup; RSS where unreadable) summed over each "
                  "service's process tree (its pid and all descendants, so a forked worker's pages shared with its "
                  "parent count once), sampled every {interval:g} s while the cycles ran; this process alone for "
                  f"'{OWN_PROCESS}'")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int) -> list[int]:
    """Children of every thread of pid (a thread that forked is their parent, not the main one)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except FileNotFoundError:
        return _children_by_scan(pid)
    except OSError:
        return []
    return found


def _children_by_scan(pid: int) -> list[int]:
    """For kernels without /proc/<pid>/task/<tid>/children, or a process gone meanwhile."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def tree_pids(pid: int) -> list[int]:
    """pid and all its descendants alive now."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        if current not in tree and Path(f"/proc/{current}").exists():
            tree.append(current)
            queue += _children(current)
    return tree


def memory_kb(pid: int) -> int:
    """PSS of one process, RSS where smaps_rollup cannot be read; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class MemorySampler:
    """Samples the memory of each named process tree (and of this process alone) in a background
    thread while `sampling()` is entered; keeps the first reading and the highest one."""

    def __init__(self, trees: dict[str, int], interval_s: float = 1.0) -> None:
        self.trees = trees
        self.interval_s = interval_s
        self.start_kb: dict[str, int] = {}
        self.peak_kb: dict[str, int] = {}

    @property
    def description(self) -> str:
        return MEMORY_MEASURE.format(interval=self.interval_s)

    def sample(self) -> None:
        readings = {name: sum(memory_kb(p) for p in tree_pids(pid)) for name, pid in self.trees.items()}
        readings[OWN_PROCESS] = memory_kb(os.getpid())
        for name, kb in readings.items():
            if kb:
                self.start_kb.setdefault(name, kb)
                self.peak_kb[name] = max(kb, self.peak_kb.get(name, 0))

    @contextmanager
    def sampling(self) -> Iterator[None]:
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.interval_s):
                self.sample()

        self.sample()
        thread = threading.Thread(target=run, name="memory-sampler", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.sample()

    def mb(self, kb: dict[str, int]) -> dict[str, float]:
        return {name: round(value / 1024, 1) for name, value in kb.items()}


@contextmanager
def stack_for_run(stack: LocalStack) -> Iterator[bool]:
    """The local stack, started if none of it ran; stopped afterwards only if it was started here
    (a stack already running, even partly, is left running). Yields whether it was started here."""
    started_here = not any(status.running for status in stack.status())
    stack.up()
    try:
        yield started_here
    finally:
        if started_here:
            stack.down()
