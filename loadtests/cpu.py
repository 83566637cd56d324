"""Where the CPU went during a benchmark run, by process tree, from /proc.

The bench's PostgreSQL rows share two cores between the load generator, the service's
processes and PostgreSQL's backends: whether a second worker can help depends on whether
the cores were already busy, and with what.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        each = queue.pop()
        found.append(each)
        for task in Path(f"/proc/{each}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def process_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process, all its threads; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may hold spaces: the fields after it start past its ")".
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return (total - idle) / _TICK, total / _TICK


@dataclass
class CpuSplit:
    """CPU seconds spent by each named process tree between ``__enter__`` and ``__exit__``,
    by this process's children that ended meanwhile (the load generator), and by the
    machine as a whole (``busy`` of ``capacity``: cores times the wall time)."""

    roots: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0
    capacity: float = 0.0
    _start: dict[int, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _children: float = 0.0

    def __enter__(self) -> CpuSplit:
        self._start = {pid: process_seconds(pid) for root in self.roots.values()
                       for pid in descendants(root)}
        self._children = _children_seconds()
        self._machine = machine_seconds()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        busy, total = machine_seconds()
        self.busy, self.capacity = busy - self._machine[0], total - self._machine[1]
        self.seconds = {
            name: sum(process_seconds(pid) - self._start.get(pid, 0.0)
                      for pid in descendants(root))
            for name, root in self.roots.items()
        }
        self.seconds["load generator"] = _children_seconds() - self._children
        self.seconds["other"] = max(0.0, self.busy - sum(self.seconds.values()))

    def per_event_us(self, events: int) -> dict[str, float]:
        return {name: round(seconds / events * 1e6, 1) for name, seconds in self.seconds.items()}


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
