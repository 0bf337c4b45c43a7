"""What the kernel knows about a process: CPU time, resident memory and its peak (Linux /proc)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuMeter",
    "ProcessInfo",
    "children",
    "cpu_seconds",
    "machine_busy_seconds",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "tree_cpu_seconds",
]

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessInfo:
    """A process and its command line."""

    pid: int
    """Process id."""
    cmdline: tuple[str, ...]
    """Its arguments."""


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    text = (_PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float:
    """User + system CPU time of `pid` (all its threads), in seconds.

    With `with_reaped_children`, the CPU time of children it has waited for is added (a
    PostgreSQL postmaster's exited backends).
    """
    fields = _stat_fields(pid)
    # After the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def children(pid: int) -> list[ProcessInfo]:
    """The live direct children of `pid`."""
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(_stat_fields(int(entry.name))[1]) == pid:
                raw = (entry / "cmdline").read_bytes()
                found.append(ProcessInfo(int(entry.name), tuple(raw.decode().split("\0")[:-1])))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid`, the children it reaped and its live children (e.g. PostgreSQL)."""
    total = cpu_seconds(pid, with_reaped_children=True)
    for child in children(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(child.pid)
    return total


def _status_kib(pid: int, key: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """Highest resident set size since the process started or `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0); False if not permitted."""
    try:
        (_PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


class CpuMeter:
    """CPU used by a set of processes between `start()` and `stop()`, in seconds."""

    def __init__(self, pids: dict[str, int], *, trees: frozenset[str] = frozenset()) -> None:
        """Measure `pids` by name; names in `trees` count their children too."""
        self._pids = pids
        self._trees = trees
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        readings = {}
        for name, pid in self._pids.items():
            with contextlib.suppress(OSError):
                readings[name] = tree_cpu_seconds(pid) if name in self._trees else cpu_seconds(pid)
        return readings

    def start(self) -> None:
        """Take the starting readings."""
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        """CPU seconds each process used since `start()`."""
        end = self._now()
        return {name: end[name] - self._start[name] for name in end if name in self._start}
